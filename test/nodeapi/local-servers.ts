// Local stand-ins for the internet the checks probe: an HTTP server on 127.0.0.1
// and one on ::1, both answering with a Server header.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProbeTargets {
  v4: string; // http://127.0.0.1:<port>/
  v6: string; // http://[::1]:<port>/
  v4Port: number;
  hits: () => number;
  close(): Promise<void>;
}

export async function startProbeTargets(): Promise<ProbeTargets> {
  let hits = 0;
  const handler = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    hits++;
    res.writeHead(200, { server: 'probe-target', 'content-type': 'text/plain' }).end('ok\n');
  };
  const v4 = http.createServer(handler);
  const v6 = http.createServer(handler);
  await new Promise<void>((resolve) => v4.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => v6.listen(0, '::1', resolve));
  const p4 = (v4.address() as AddressInfo).port;
  const p6 = (v6.address() as AddressInfo).port;
  return {
    v4: `http://127.0.0.1:${p4}/`,
    v6: `http://[::1]:${p6}/`,
    v4Port: p4,
    hits: () => hits,
    close: async () => {
      for (const server of [v4, v6]) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  };
}

/** Both 127.0.0.1 and ::1 in /etc/hosts (.ci/setup.d/nodeapi.sh). */
export const DUAL_NAME = 'dual.aleph-edge.test';
