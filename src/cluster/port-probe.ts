import net from 'node:net';
import { hostPort } from '../common/index.js';
import type { ListenAddress } from '../config/index.js';
import { listenError } from '../edge/index.js';

/**
 * Workers bind with SO_REUSEPORT, which the kernel also grants to a second process
 * of the same user: it would silently take half the connections. So the primary
 * first binds each address without it: taken by anyone (a node whose workers hold
 * it included) -> the same error a single process gets, before any worker starts.
 */
export async function probeAddresses(kind: string, addresses: ListenAddress[]): Promise<void> {
  for (const address of addresses) {
    if (address.port === 0) continue;
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: address.host, port: address.port, ipv6Only: address.host.includes(':'), exclusive: true }, () => resolve());
    }).catch((error: NodeJS.ErrnoException) => {
      throw listenError(kind, hostPort(address.host, address.port), error);
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
