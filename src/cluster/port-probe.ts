import net from 'node:net';
import { hostPort } from '../common/index.js';
import type { ListenAddress } from '../config/index.js';
import { listenError } from '../edge/index.js';

/** What the primary holds while its workers listen: released by close() or by its death. */
export interface AddressClaims {
  close(): Promise<void>;
}

const label = (address: ListenAddress) => hostPort(address.host, address.port);

/**
 * Workers bind with SO_REUSEPORT, which the kernel also grants to a second process
 * of the same user: it would silently take half the connections. So the primary
 * first claims each address for its lifetime, then binds it once without
 * SO_REUSEPORT: taken by anyone (a node whose workers hold it included) -> the
 * same error a single process gets, before any worker starts.
 *
 * The claim is an abstract unix socket named after the address: the kernel frees it
 * when the process dies (no stale lock file), and a second node starting at the same
 * moment fails on it instead of passing its probe in the gap between ours and our
 * workers' binds.
 */
export async function claimAddresses(kind: string, addresses: ListenAddress[]): Promise<AddressClaims> {
  const held: net.Server[] = [];
  const close = () => Promise.all(held.map((server) => new Promise<void>((resolve) => server.close(() => resolve())))).then(() => undefined);
  try {
    for (const address of addresses) {
      if (address.port === 0) continue;
      held.push(await claim(kind, address));
      await probe(kind, address);
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { close };
}

function claim(kind: string, address: ListenAddress): Promise<net.Server> {
  const server = net.createServer((socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(new Error(`cannot listen on ${kind} ${label(address)}: ${error.code === 'EADDRINUSE' ? 'EADDRINUSE (another aleph-edge node is listening there)' : error.code ?? error.message}`));
    });
    server.listen({ path: `\0aleph-edge/listen/tcp/${label(address)}` }, () => {
      server.unref(); // held, not waited on: the node's lifetime is its listeners'
      resolve(server);
    });
  });
}

async function probe(kind: string, address: ListenAddress): Promise<void> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address.host, port: address.port, ipv6Only: address.host.includes(':'), exclusive: true }, () => resolve());
  }).catch((error: NodeJS.ErrnoException) => {
    throw listenError(kind, label(address), error);
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
