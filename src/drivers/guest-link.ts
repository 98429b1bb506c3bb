// Guest link: makes an execution's guest API (an HTTP server on a per-execution unix
// socket, see src/guestapi/) reachable from the program over TCP. A listener on a
// given host address forwards each accepted connection, bytes as they are, to the
// unix socket. Used by every driver:
//   process driver  -> 127.0.0.1:<free port>
//   tap networking  -> the tap's host address, accepting only the guest's address
//   qemu user mode  -> a unix socket of the VM's own (in its 0700 folder), reached
//                      through a guestfwd whose command connects to that socket only
// (docs/guest-api.md). Identity is the socket the link forwards to, never anything
// the guest sends; who may connect is checked by peer address (taps), by the
// connecting process (loopback: the program's process tree) or by the folder's
// permissions (unix). Bounded: a connection cap, an idle timeout on every connection,
// a connect timeout towards the socket; close() ends everything it opened.

import { chmod } from 'node:fs/promises';
import net from 'node:net';
import { ProcessTreePeers } from './peer.js';

export interface GuestLinkOptions {
  /** The execution's guest API socket. */
  socket: string;
  /** Address to listen on, e.g. '127.0.0.1' or a tap's host address. */
  host: string;
  /** 0 (default) = a free port picked by the kernel. */
  port?: number;
  /**
   * Peer addresses allowed to connect (e.g. the VM's guest address on its tap);
   * undefined = any. On a tap, other guests could route to this host address too.
   */
  allowedPeers?: readonly string[];
  /**
   * Only connections made by this process or its descendants, running as the node's
   * user, are accepted (peer.ts; loopback IPv4 links): the program's process group
   * leader, or the VMM that relays a user-mode guest. A getter: the pid is known once
   * the program started, after the link was opened; until then nothing is accepted.
   */
  peerProcess?: () => number | undefined;
  /** Concurrent connections; more are closed at once. Default 32. */
  maxConnections?: number;
  /** A connection with no traffic either way for this long is closed. Default 60 s. */
  idleTimeoutMs?: number;
  /** Connecting to the unix socket must succeed within this. Default 2 s. */
  connectTimeoutMs?: number;
}

export interface GuestLink {
  readonly host: string;
  readonly port: number;
  /** `http://<host>:<port>` (IPv6 hosts bracketed): the program's ALEPH_API_HOST. */
  readonly url: string;
  /** Connections open right now (for tests and status). */
  connections(): number;
  /** Stops listening and closes every forwarded connection; idempotent. */
  close(): Promise<void>;
}

export const GUEST_LINK_DEFAULTS = { maxConnections: 32, idleTimeoutMs: 60_000, connectTimeoutMs: 2_000 } as const;

/** Opens the listener; rejects when the address cannot be bound. */
export async function openGuestLink(options: GuestLinkOptions): Promise<GuestLink> {
  const allowed = options.allowedPeers ? new Set(options.allowedPeers.map(normalizeAddress)) : undefined;
  const peers = options.peerProcess ? new ProcessTreePeers(options.peerProcess, process.getuid?.() ?? 0) : undefined;
  const admit = (client: net.Socket): boolean | Promise<boolean> => {
    if (allowed && !allowed.has(normalizeAddress(client.remoteAddress ?? ''))) return false;
    if (!peers) return true;
    return peers.owns({ address: client.localAddress ?? '', port: client.localPort ?? 0 }, { address: client.remoteAddress ?? '', port: client.remotePort ?? 0 });
  };
  const link = await serveLink(options, admit, { host: options.host, port: options.port ?? 0, exclusive: true });
  const address = link.server.address() as net.AddressInfo;
  const host = options.host;
  return {
    host,
    port: address.port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`,
    connections: link.connections,
    close: link.close,
  };
}

export interface UnixGuestLinkOptions extends Pick<GuestLinkOptions, 'socket' | 'maxConnections' | 'idleTimeoutMs' | 'connectTimeoutMs'> {
  /**
   * The unix socket to listen on, in a folder only the node's user can enter: whoever
   * can open it reaches this execution's guest API (a VM's own folder, so only the
   * command its guestfwd runs for that VM connects here).
   */
  path: string;
}

export interface UnixGuestLink {
  readonly path: string;
  connections(): number;
  /** Stops listening, removes the socket file and closes every forwarded connection; idempotent. */
  close(): Promise<void>;
}

/** A guest link on a unix socket of its own; rejects when the path cannot be bound. */
export async function openUnixGuestLink(options: UnixGuestLinkOptions): Promise<UnixGuestLink> {
  const link = await serveLink(options, () => true, { path: options.path, exclusive: true });
  // The folder keeps others out; the socket itself is the owner's alone too.
  await chmod(options.path, 0o600).catch(async (error: Error) => {
    await link.close();
    throw error;
  });
  return { path: options.path, connections: link.connections, close: link.close };
}

/**
 * The forwarding both kinds of link share: admits or closes each connection before it
 * counts (a stranger's connections never take the program's places), then pipes it to
 * the guest API socket within the caps.
 */
async function serveLink(
  options: Pick<GuestLinkOptions, 'socket' | 'maxConnections' | 'idleTimeoutMs' | 'connectTimeoutMs'>,
  admit: (client: net.Socket) => boolean | Promise<boolean>,
  listen: net.ListenOptions,
): Promise<{ server: net.Server; connections(): number; close(): Promise<void> }> {
  const maxConnections = options.maxConnections ?? GUEST_LINK_DEFAULTS.maxConnections;
  const idleTimeoutMs = options.idleTimeoutMs ?? GUEST_LINK_DEFAULTS.idleTimeoutMs;
  const connectTimeoutMs = options.connectTimeoutMs ?? GUEST_LINK_DEFAULTS.connectTimeoutMs;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new RangeError(`maxConnections must be a positive integer, got ${maxConnections}`);
  if (!(idleTimeoutMs > 0) || !(connectTimeoutMs > 0)) throw new RangeError('idleTimeoutMs and connectTimeoutMs must be positive');

  const live = new Set<net.Socket>();
  let pairs = 0;
  let closing: Promise<void> | undefined;
  let checking = 0;

  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    if (closing || pairs + checking >= maxConnections) {
      client.destroy();
      return;
    }
    const verdict = admit(client);
    if (verdict === true) return forward(client);
    if (verdict === false) return void client.destroy();
    checking++;
    client.on('error', () => undefined);
    verdict.catch(() => false).then((ok) => {
      checking--;
      if (ok && !closing && pairs < maxConnections && !client.destroyed) forward(client);
      else client.destroy();
    }, () => undefined);
  });
  const forward = (client: net.Socket): void => {
    const upstream = net.connect({ path: options.socket });
    live.add(client);
    live.add(upstream);
    pairs++;
    let ended = false;
    const end = () => {
      if (!ended) {
        ended = true;
        pairs--;
      }
      client.destroy();
      upstream.destroy();
    };
    for (const side of [client, upstream]) {
      side.on('error', end);
      side.on('close', () => {
        live.delete(side);
        end();
      });
    }
    const connectTimer = setTimeout(end, connectTimeoutMs);
    upstream.once('connect', () => {
      clearTimeout(connectTimer);
      // Idle means neither side moved a byte: each side's timer resets on its own traffic,
      // and pipe() moves traffic through both, so one timeout per side covers the pair.
      client.setTimeout(idleTimeoutMs, end);
      upstream.setTimeout(idleTimeoutMs, end);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.once('close', () => clearTimeout(connectTimer));
  };
  server.on('error', () => undefined);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    connections: () => pairs,
    close: () => {
      // A unix server unlinks its socket file when it closes.
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of live) socket.destroy();
      });
      return closing;
    },
  };
}

/** '::ffff:10.0.0.2' and '10.0.0.2' are the same peer. */
function normalizeAddress(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower;
}

/**
 * The guest API environment of a program (names as the reference runtime sets them).
 * `unixSocket` is a path the program itself can open, '' when it has none (VMs, or a
 * sandbox without the socket): clients then use the host URL (aleph-sdk treats '' as unset).
 * Remote crypto points at the same endpoint, which answers signing requests with a
 * clear refusal (docs/guest-api.md).
 */
export function guestEnv(apiHost: string, sender: string, unixSocket = ''): Record<string, string> {
  return {
    ALEPH_API_HOST: apiHost,
    ALEPH_API_UNIX_SOCKET: unixSocket,
    ALEPH_REMOTE_CRYPTO_HOST: apiHost,
    ALEPH_REMOTE_CRYPTO_UNIX_SOCKET: unixSocket,
    ALEPH_ADDRESS_TO_USE: sender,
  };
}

/**
 * Where guest-links listen on the host when the program reaches them over loopback
 * (process driver, qemu user-mode networking). Never 127.0.0.1, where programs listen on
 * ports the drivers pick: a link that the kernel gave a port just picked for a program
 * would answer that program's readiness probe and take its requests. It also keeps the
 * links out of what a user-mode guest reaches at 10.0.2.2 (the host's 127.0.0.1).
 */
export const GUEST_LINK_LOOPBACK = '127.0.0.2';
