// Free loopback port discovery. The kernel picks a port for a throwaway listener;
// we release it and hand the number to the program. A tiny race remains (another
// process may grab the port in between) — the orchestrator's readiness check and
// boot failure path cover that rare case.

import { createServer } from 'node:net';

export const LOOPBACK_HOST = '127.0.0.1';

export function pickFreePort(host: string = LOOPBACK_HOST): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('could not read the bound port'));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
