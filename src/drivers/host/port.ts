// Free loopback port discovery: a throwaway listener finds a free port, we release it
// and hand the number to the program. Ports come from below the kernel's ephemeral
// range: a port the kernel hands out itself (port 0) is also what it gives outgoing
// connections as their source port, so under connection churn one could take it
// between our release and the program's bind (seen: busybox httpd exiting at boot
// while another load ran). A remaining collision with another node's pick is rare
// and ends in the orchestrator's boot failure path.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export const LOOPBACK_HOST = '127.0.0.1';

/** Lowest port the kernel uses for outgoing connections (32768 when unreadable). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32768;
  } catch {
    return 32768;
  }
}

const RANGE_LOW = 10_000;
const TRIES = 32;

function tryListen(host: string, port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(undefined) : reject(err)));
    server.listen({ host, port, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('could not read the bound port'));
        return;
      }
      const bound = address.port;
      server.close((err) => (err ? reject(err) : resolve(bound)));
    });
  });
}

export async function pickFreePort(host: string = LOOPBACK_HOST): Promise<number> {
  const high = ephemeralLow() - 1;
  if (high > RANGE_LOW) {
    for (let i = 0; i < TRIES; i++) {
      const port = await tryListen(host, RANGE_LOW + Math.floor(Math.random() * (high - RANGE_LOW + 1)));
      if (port !== undefined) return port;
    }
  }
  // A crowded range: let the kernel choose.
  const port = await tryListen(host, 0);
  if (port === undefined) throw new Error(`no free port on ${host}`);
  return port;
}
