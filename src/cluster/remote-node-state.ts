import type { ExecutionInfo } from '../orchestrator/index.js';
import type {
  Capability, CertificateExpiry, DiagnosticResult, HostCheckResult, NodeOverview, NodeState, NodeStateMethod, PublicConfig, SystemUsage, UsageHistory,
} from '../nodeapi/index.js';
import type { WorkerChannel } from './worker-channel.js';

/** NodeState of a worker: every question goes to the primary, which owns the answers (and the secret). */
export class RemoteNodeState implements NodeState {
  constructor(private readonly channel: WorkerChannel) {}

  private ask<T>(method: NodeStateMethod, arg?: string): Promise<T> {
    return this.channel.call<T>(arg === undefined ? { type: 'node', method } : { type: 'node', method, arg });
  }

  overview() { return this.ask<NodeOverview>('overview'); }
  usage() { return this.ask<SystemUsage>('usage'); }
  capability() { return this.ask<Capability>('capability'); }
  executions() { return this.ask<ExecutionInfo[]>('executions'); }
  checkDiagnostic() { return this.ask<DiagnosticResult>('checkDiagnostic'); }
  checkHost() { return this.ask<HostCheckResult>('checkHost'); }
  checkHostIpv6() { return this.ask<boolean>('checkHostIpv6'); }
  publicConfig() { return this.ask<PublicConfig>('publicConfig'); }
  usageHistory() { return this.ask<UsageHistory>('usageHistory'); }
  certificates() { return this.ask<CertificateExpiry[]>('certificates'); }
  effectiveConfig() { return this.ask<unknown>('effectiveConfig'); }
  verifyToken(token: string) { return this.ask<boolean>('verifyToken', token); }
}
