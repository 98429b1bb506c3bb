import type { ControlGateway, ControlMethod, ControlReply, ControlRequest, LogBatch, StreamAuth } from '../control/index.js';
import type { WorkerChannel } from './worker-channel.js';

/** The control service of a worker: every call goes to the primary, which owns the orchestrator. */
export class RemoteControl implements ControlGateway {
  constructor(private readonly channel: WorkerChannel) {}

  private ask<T>(method: ControlMethod, args: unknown[]): Promise<T> {
    return this.channel.call<T>({ type: 'control', method, args });
  }

  request(request: ControlRequest) { return this.ask<ControlReply>('request', [request]); }
  authorizeStream(path: string, auth: unknown) { return this.ask<StreamAuth>('authorizeStream', [path, auth]); }
  logsAfter(hash: string, after: number) { return this.ask<LogBatch>('logsAfter', [hash, after]); }
}
