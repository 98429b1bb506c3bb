import type { Counter, MetricsRegistry } from '../metrics/index.js';
import type { ExecutionGateway, Lease } from '../orchestrator/index.js';
import type { WireLease } from './protocol.js';
import type { WorkerChannel } from './worker-channel.js';

/** One lease from the primary, shared by this worker's concurrent requests for a program. */
interface SharedLease {
  wire: WireLease;
  users: number;
  served: number;
  /** No new users: the execution retired or failed; released when its users are done. */
  stale: boolean;
  /** Ends the linger: re-armed (refresh) at each release, a no-op while the lease is in use. */
  lingering: NodeJS.Timeout | undefined;
  /** Tells the primary the lease is lingering, once it has been unused for LINGER_NOTICE_MS. */
  notice: NodeJS.Timeout | undefined;
  /** The primary was told it lingers (and must hear when it is in use again). */
  noticed: boolean;
  idleSince: number;
  released: boolean;
}

/**
 * How long a lease sits unused before the primary hears that it lingers. Telling it at
 * every release cost two IPC messages per request whenever requests came one at a
 * time (the paced workload; the primary alone spent 100-400 µs per request on them,
 * docs/benchmarks.md); a request that follows within this needs none.
 */
const LINGER_NOTICE_MS = 50;

/**
 * ExecutionGateway of a worker. The primary's orchestrator answers the first
 * request for a program; while that lease is in use, and for a short linger after
 * its last request (`WireLease.lingerMs`), further requests share it without a
 * round trip. It goes back with the number of requests it served and how long it
 * sat unused, so the orchestrator's idle timer counts from the last request.
 */
export class RemoteGateway implements ExecutionGateway {
  private readonly shared = new Map<string, SharedLease>();
  private readonly roundTrips: Counter;

  constructor(private readonly channel: WorkerChannel, metrics: MetricsRegistry) {
    this.roundTrips = metrics.counter('aleph_edge_lease_round_trips_total', 'Leases asked of the primary (requests served on a shared or lingering lease need none)');
  }

  async acquire(hash: string, signal?: AbortSignal): Promise<Lease> {
    const warm = this.leaseIfReady(hash);
    if (warm) return warm;
    this.roundTrips.inc();
    const wire = await this.channel.call<WireLease>({ type: 'acquire', hash }, signal);
    const lease: SharedLease = { wire, users: 0, served: 0, stale: false, lingering: undefined, notice: undefined, noticed: false, idleSince: 0, released: false };
    // Concurrent first requests may each get a lease; the newest is shared, the others end with their users.
    const previous = this.shared.get(hash);
    this.shared.set(hash, lease);
    if (previous) this.retire(previous);
    return this.use(lease);
  }

  leaseIfReady(hash: string): Lease | undefined {
    const warm = this.shared.get(hash);
    return warm && !warm.stale ? this.use(warm) : undefined;
  }

  /** The primary retired the program's execution: new requests must ask again. */
  retired(hash: string): void {
    const lease = this.shared.get(hash);
    if (lease) this.retire(lease);
  }

  private use(lease: SharedLease): Lease {
    lease.users++;
    // The timers stay armed (a fresh timer per request cost more than letting them
    // fire into a lease in use, which they ignore).
    if (lease.noticed) {
      lease.noticed = false;
      this.channel.notify({ type: 'linger', leaseId: lease.wire.leaseId, lingering: false });
    }
    let released = false;
    const { wire } = lease;
    return {
      hash: wire.hash,
      endpoint: wire.endpoint,
      requestTimeoutMs: wire.requestTimeoutMs,
      codeRef: wire.codeRef,
      release: () => {
        if (released) return;
        released = true;
        lease.users--;
        lease.served++;
        if (lease.users > 0) return;
        lease.idleSince = Date.now();
        if (lease.stale || wire.lingerMs <= 0) return this.retire(lease);
        if (lease.lingering) {
          lease.lingering.refresh();
          lease.notice!.refresh();
          return;
        }
        lease.lingering = setTimeout(() => {
          if (lease.users === 0) this.retire(lease);
        }, wire.lingerMs).unref();
        // Not busy any more: the primary may take the execution back (it retires it, and we give this back).
        lease.notice = setTimeout(() => {
          if (lease.users > 0 || lease.noticed || lease.released) return;
          lease.noticed = true;
          this.channel.notify({ type: 'linger', leaseId: wire.leaseId, lingering: true });
        }, Math.min(LINGER_NOTICE_MS, wire.lingerMs)).unref();
      },
      reportFailure: (reason, fatal) => {
        // Whatever went wrong, the next request asks the primary again.
        this.retire(lease);
        this.channel.notify({ type: 'failure', leaseId: wire.leaseId, reason, fatal });
      },
    };
  }

  /** No new users; given back now if unused, else when its last request ends. */
  private retire(lease: SharedLease): void {
    lease.stale = true;
    if (this.shared.get(lease.wire.hash) === lease) this.shared.delete(lease.wire.hash);
    if (lease.users > 0 || lease.released) return;
    lease.released = true;
    clearTimeout(lease.lingering);
    clearTimeout(lease.notice);
    this.channel.notify({ type: 'release', leaseId: lease.wire.leaseId, requests: lease.served, idleMs: Date.now() - lease.idleSince });
  }
}
