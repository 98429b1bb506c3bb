import { isIPv6, type Socket } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { MetricsRegistry } from '../metrics/index.js';

export interface HandshakeLimits {
  /** A connection that has not finished its TLS handshake by then is destroyed. */
  timeoutMs: number;
  /** Unfinished handshakes per client address (IPv6: per /64). */
  perAddress: number;
  /** Unfinished handshakes in total, across the listeners of this process. */
  total: number;
}

interface Pending {
  socket: Socket;
  group: string;
  timer: NodeJS.Timeout;
}

/**
 * Bounds connections that have not completed a TLS handshake: an absolute deadline
 * from accept (Node's handshakeTimeout is an idle timer, which a client dripping
 * bytes keeps resetting), and caps per address and in total, over which a connection
 * is refused at accept. Drain closes them at once instead of waiting for them.
 */
export class HandshakeGuard {
  private readonly pending = new Map<string, Pending>();
  private readonly perGroup = new Map<string, number>();
  private readonly refused;
  private readonly timedOut;

  constructor(private readonly limits: HandshakeLimits, metrics: MetricsRegistry) {
    this.refused = metrics.counter('aleph_edge_tls_handshakes_refused_total', 'Connections refused at accept: too many unfinished TLS handshakes, by cap');
    this.timedOut = metrics.counter('aleph_edge_tls_handshake_timeouts_total', 'Connections destroyed for not finishing their TLS handshake in time');
    metrics.gauge('aleph_edge_tls_handshakes_pending', 'Connections whose TLS handshake is not finished').collect(() => [[{}, this.pending.size]]);
  }

  /** Watches a TLS server (https or http2): before its own connection listener runs. */
  attach(server: TlsServer): void {
    server.prependListener('connection', (socket: Socket) => this.admit(socket));
    server.on('secureConnection', (socket: TLSSocket) => this.finished(keyOf(socket)));
  }

  /** Destroys every connection still in its handshake (drain, shutdown). */
  closeAll(): void {
    for (const entry of [...this.pending.values()]) entry.socket.destroy();
  }

  private admit(socket: Socket): void {
    const key = keyOf(socket);
    const address = socket.remoteAddress;
    if (key === undefined || address === undefined) {
      socket.destroy(); // already gone
      return;
    }
    const group = addressGroup(address);
    const inGroup = this.perGroup.get(group) ?? 0;
    if (this.pending.size >= this.limits.total || inGroup >= this.limits.perAddress) {
      this.refused.inc({ cap: this.pending.size >= this.limits.total ? 'total' : 'address' });
      socket.destroy();
      return;
    }
    const timer = setTimeout(() => {
      this.timedOut.inc();
      socket.destroy();
    }, this.limits.timeoutMs);
    timer.unref();
    this.pending.set(key, { socket, group, timer });
    this.perGroup.set(group, inGroup + 1);
    socket.once('close', () => this.finished(key));
  }

  private finished(key: string | undefined): void {
    const entry = key === undefined ? undefined : this.pending.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.pending.delete(key!);
    const left = (this.perGroup.get(entry.group) ?? 1) - 1;
    if (left > 0) this.perGroup.set(entry.group, left);
    else this.perGroup.delete(entry.group);
  }
}

// The TLS socket reports the addresses of the TCP socket it wraps, so both map to one key.
function keyOf(socket: Socket): string | undefined {
  if (socket.remoteAddress === undefined) return undefined;
  return `${socket.remoteAddress}|${socket.remotePort}|${socket.localAddress}|${socket.localPort}`;
}

/** IPv4 (and IPv4-mapped) addresses count alone; IPv6 by /64, what one client commonly holds. */
export function addressGroup(address: string): string {
  if (address.startsWith('::ffff:') || !isIPv6(address)) return address.replace(/^::ffff:/, '');
  const [head, tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const words = address.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return words.slice(0, 4).map((w) => parseInt(w || '0', 16).toString(16)).join(':') + '::/64';
}
