import { fromWire } from './errors.js';
import type { Call, Notice, Reply } from './protocol.js';

type CallWithoutId = Call extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

/** The worker's side of the IPC channel: calls with replies, and fire-and-forget notices. */
export class WorkerChannel {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();

  constructor(private readonly send: (message: unknown) => void) {}

  call<T>(call: CallWithoutId, signal?: AbortSignal): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        if (!this.pending.delete(id)) return;
        this.notify({ type: 'cancel', id });
        reject(signal!.reason ?? new Error('aborted'));
      };
      this.pending.set(id, {
        resolve: (value) => { signal?.removeEventListener('abort', onAbort); resolve(value as T); },
        reject: (error) => { signal?.removeEventListener('abort', onAbort); reject(error); },
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.send({ ...call, id });
    });
  }

  notify(notice: Notice): void {
    this.send(notice);
  }

  /** Routes a reply from the primary to its caller. */
  settle(reply: Reply): void {
    const waiter = this.pending.get(reply.id);
    if (!waiter) {
      // Cancelled while the primary answered: hand back a lease nobody will use.
      const value = reply.value as { leaseId?: unknown } | undefined;
      if (reply.ok && typeof value?.leaseId === 'number') this.notify({ type: 'release', leaseId: value.leaseId, requests: 0, idleMs: 0 });
      return;
    }
    this.pending.delete(reply.id);
    if (reply.ok) waiter.resolve(reply.value);
    else waiter.reject(fromWire(reply.error!));
  }

  /** The primary went away: fail everything still waiting. */
  failAll(error: Error): void {
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }
}
