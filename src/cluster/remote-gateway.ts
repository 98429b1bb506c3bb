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
}

/**
 * ExecutionGateway of a worker. The primary's orchestrator answers the first
 * request for a program; while that lease is in use, further requests share it
 * without a round trip. It goes back (with the number of requests it served) when
 * its last request ends, so the orchestrator's in-flight and idle accounting hold.
 */
export class RemoteGateway implements ExecutionGateway {
  private readonly shared = new Map<string, SharedLease>();

  constructor(private readonly channel: WorkerChannel) {}

  async acquire(hash: string, signal?: AbortSignal): Promise<Lease> {
    let lease = this.shared.get(hash);
    if (!lease || lease.stale) {
      const wire = await this.channel.call<WireLease>({ type: 'acquire', hash }, signal);
      lease = { wire, users: 0, served: 0, stale: false };
      // Concurrent first requests may each get a lease; the newest is shared, the others end with their users.
      this.shared.set(hash, lease);
    }
    return this.use(lease);
  }

  /** The primary retired the program's execution: new requests must ask again. */
  retired(hash: string): void {
    const lease = this.shared.get(hash);
    if (lease) this.retire(lease);
  }

  private use(lease: SharedLease): Lease {
    lease.users++;
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
        if (lease.users === 0) {
          this.retire(lease);
          this.channel.notify({ type: 'release', leaseId: wire.leaseId, requests: lease.served });
        }
      },
      reportFailure: (reason, fatal) => {
        // Whatever went wrong, the next request asks the primary again.
        this.retire(lease);
        this.channel.notify({ type: 'failure', leaseId: wire.leaseId, reason, fatal });
      },
    };
  }

  private retire(lease: SharedLease): void {
    lease.stale = true;
    if (this.shared.get(lease.wire.hash) === lease) this.shared.delete(lease.wire.hash);
  }
}
