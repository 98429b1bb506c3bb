// The node's state as the pages see it, in the process that owns it (the primary
// in a multi-core node). Checks and samples are shared by every caller.

import { isIP } from 'node:net';
import type { Settings } from '../config/index.js';
import type { ExecutionInfo } from '../orchestrator/index.js';
import { CachedTask } from './cached.js';
import { hostEgressIpv6, runDiagnostic, runHostChecks, type SelfAddress } from './checks.js';
import { redactConfig } from './redact.js';
import type { LoginSecret } from './secret.js';
import type { SystemSampler } from './system.js';
import type { CertificateExpiry, DiagnosticResult, HostCheckResult, NodeOverview, NodeState, PublicConfig, UsageHistory } from './types.js';
import { defaultDriversSettings, defaultNodeSettings } from '../config/index.js';

/** Check answers are reused this long: monitors call every few seconds from several places. */
export const CHECK_CACHE_MS = 5_000;

export interface LocalNodeStateDeps {
  version: string;
  startedAt: number;
  settings(): Settings;
  executions(): ExecutionInfo[];
  /** The node's listening sockets, as bound (edge's ListenerInfo). */
  listeners(): NodeListener[];
  sampler: SystemSampler;
  secret: LoginSecret;
  /** The certificates the node serves (none known when absent). */
  certificates?: () => Promise<CertificateExpiry[]>;
}

/** What the pages read of a listening socket. */
export interface NodeListener {
  protocol: 'https' | 'http';
  /** Absent for an inherited socket that is not TCP. */
  address?: string;
  port?: number;
}

/** Where to reach our own HTTPS listener: a wildcard bind is reached on loopback. */
export function selfAddress(listeners: readonly NodeListener[]): SelfAddress | undefined {
  for (const { protocol, address, port } of listeners) {
    if (protocol !== 'https' || address === undefined || port === undefined || isIP(address) === 0) continue;
    if (address === '0.0.0.0') return { host: '127.0.0.1', port };
    if (address === '::') return { host: '::1', port };
    return { host: address, port };
  }
  return undefined;
}

export class LocalNodeState implements NodeState {
  private readonly diagnostic: CachedTask<DiagnosticResult>;
  private readonly host: CachedTask<HostCheckResult>;
  private readonly egress6: CachedTask<boolean>;
  /** As in every worker's Server header, which is set at start (a reload does not change it). */
  private readonly alephVmVersion: string;

  constructor(private readonly deps: LocalNodeStateDeps) {
    this.alephVmVersion = this.node().alephVmVersion;
    this.diagnostic = new CachedTask(() => runDiagnostic({
      hash: this.node().checkProgram,
      domain: deps.settings().server.domain,
      self: () => selfAddress(deps.listeners()),
    }), CHECK_CACHE_MS);
    this.host = new CachedTask(() => runHostChecks(this.hostOptions()), CHECK_CACHE_MS);
    this.egress6 = new CachedTask(() => hostEgressIpv6(this.hostOptions()), CHECK_CACHE_MS);
  }

  private node() {
    return this.deps.settings().node ?? defaultNodeSettings();
  }

  private hostOptions() {
    const settings = this.deps.settings();
    const checks = this.node().checks;
    return {
      ...checks,
      domain: checks.domain || settings.server.domain,
      httpsPort: () => selfAddress(this.deps.listeners())?.port ?? 443,
      version: this.deps.version,
    };
  }

  async overview(): Promise<NodeOverview> {
    const settings = this.deps.settings();
    const executions = this.deps.executions();
    return {
      version: this.deps.version,
      domain: settings.server.domain,
      uptime_s: Math.round((Date.now() - this.deps.startedAt) / 1000),
      https_port: selfAddress(this.deps.listeners())?.port ?? 443,
      executions: executions.length,
      memory_used_mib: executions.reduce((sum, e) => sum + e.memory_mib, 0),
      memory_budget_mib: settings.orchestrator.memoryBudgetMib,
      check_program: this.node().checkProgram,
      node_hash: this.node().nodeHash,
    };
  }

  async usage() {
    return this.deps.sampler.usage();
  }

  async capability() {
    return this.deps.sampler.capability();
  }

  async executions(): Promise<ExecutionInfo[]> {
    return this.deps.executions();
  }

  checkDiagnostic(): Promise<DiagnosticResult> {
    return this.diagnostic.get();
  }

  checkHost(): Promise<HostCheckResult> {
    return this.host.get();
  }

  checkHostIpv6(): Promise<boolean> {
    return this.egress6.get();
  }

  async publicConfig(): Promise<PublicConfig> {
    const settings = this.deps.settings();
    const node = this.node();
    const driver = settings.orchestrator.driver;
    const drivers = settings.drivers ?? defaultDriversSettings();
    return {
      DOMAIN_NAME: settings.server.domain,
      node_hash: node.nodeHash,
      // The release whose API we answer, as in `Server` (our own version: X-Aleph-Edge-Version).
      version: this.alephVmVersion,
      // No vm-connector: programs reach the Aleph API through the guest API.
      references: { API_SERVER: settings.programs.alephApi, CHECK_FASTAPI_VM_ID: node.checkProgram, CONNECTOR_URL: null },
      security: {
        // The jailer is a Firecracker notion; other drivers have no such switch.
        USE_JAILER: driver === 'firecracker' ? drivers.firecracker.jailer !== '' : null,
        PRINT_SYSTEM_LOGS: null,
        // Network programs are followed on the message stream; amended or forgotten ones are drained.
        WATCH_FOR_UPDATES: settings.programs.source === 'aleph',
        ALLOW_VM_NETWORKING: null,
        USE_DEVELOPER_SSH_KEYS: false,
      },
      networking: { IPV6_ADDRESS_POOL: null, IPV6_ALLOCATION_POLICY: null, IPV6_SUBNET_PREFIX: null, IPV6_FORWARDING_ENABLED: null, USE_NDP_PROXY: null },
      debug: { SENTRY_DSN_CONFIGURED: false, DEBUG_ASYNCIO: null, EXECUTION_LOG_ENABLED: null },
      payment: { PAYMENT_RECEIVER_ADDRESS: null, AVAILABLE_PAYMENTS: null, PAYMENT_MONITOR_INTERVAL: null },
      computing: {
        ENABLE_QEMU_SUPPORT: driver === 'qemu',
        INSTANCE_DEFAULT_HYPERVISOR: null,
        ENABLE_CONFIDENTIAL_COMPUTING: false,
        ENABLE_GPU_SUPPORT: false,
      },
      orchestrator: { driver, max_vms: settings.orchestrator.maxVms, memory_budget_mib: settings.orchestrator.memoryBudgetMib },
    };
  }

  async usageHistory(): Promise<UsageHistory> {
    return this.deps.sampler.history();
  }

  async certificates(): Promise<CertificateExpiry[]> {
    return this.deps.certificates ? this.deps.certificates() : [];
  }

  async effectiveConfig(): Promise<unknown> {
    const settings = this.deps.settings();
    return redactConfig({ ...settings, node: this.node() });
  }

  async verifyToken(token: string): Promise<boolean> {
    return this.deps.secret.matches(token);
  }
}
