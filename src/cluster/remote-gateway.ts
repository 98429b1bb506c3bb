import type { ExecutionGateway, Lease } from '../orchestrator/index.js';
import type { WireLease } from './protocol.js';
import type { WorkerChannel } from './worker-channel.js';

/** ExecutionGateway of a worker: every acquire is answered by the primary's orchestrator. */
export class RemoteGateway implements ExecutionGateway {
  constructor(private readonly channel: WorkerChannel) {}

  async acquire(hash: string, signal?: AbortSignal): Promise<Lease> {
    const wire = await this.channel.call<WireLease>({ type: 'acquire', hash }, signal);
    let released = false;
    return {
      hash: wire.hash,
      endpoint: wire.endpoint,
      requestTimeoutMs: wire.requestTimeoutMs,
      codeRef: wire.codeRef,
      release: () => {
        if (released) return;
        released = true;
        this.channel.notify({ type: 'release', leaseId: wire.leaseId });
      },
      reportFailure: (reason, fatal) => this.channel.notify({ type: 'failure', leaseId: wire.leaseId, reason, fatal }),
    };
  }
}
