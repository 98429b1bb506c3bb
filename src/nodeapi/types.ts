// Shapes of the node's public API (those of the reference supervisor, aleph-vm) and
// what the pages ask of the process that owns the node's state.

import type { ExecutionInfo } from '../orchestrator/index.js';

/** GET /about/usage/system */
export interface SystemUsage {
  cpu: { count: number; load_average: { load1: number; load5: number; load15: number }; core_frequencies: { min: number; max: number } };
  mem: { total_kB: number; available_kB: number };
  disk: { total_kB: number; available_kB: number };
  period: { start_timestamp: string; duration_seconds: number };
  properties: { cpu: { architecture: 'x86_64' | 'arm64' | null; vendor: string | null; features: string[] } };
  gpu: { devices: unknown[]; available_devices: unknown[] };
  active: boolean;
}

/** One point of the index page's chart (aleph-edge's own: GET /about/usage/history). */
export interface UsageSample {
  timestamp: string;
  /** Share of all CPUs busy over the interval before the sample; null for the first. */
  cpu_percent: number | null;
  load1: number;
  mem_total_kB: number;
  mem_available_kB: number;
}

/** GET /about/usage/history: the last hour, oldest first. */
export interface UsageHistory {
  interval_seconds: number;
  samples: UsageSample[];
}

/** A certificate the node serves, for the index page: public facts only (hosts are in CT logs anyway). */
export interface CertificateExpiry {
  host: string;
  source: string;
  issuer: string;
  not_after: string;
  /** Failed issuances or renewals in a row (0 when none). */
  renewal_failures: number;
}

/** An execution as the index page shows it: no endpoint, pid or error text. */
export interface ExecutionState {
  hash: string;
  name: string;
  state: string;
  driver: string;
  started_at: string;
  ready_at: string | null;
  last_request_at: string | null;
  requests: number;
  in_flight: number;
  memory_mib: number;
  restarts: number;
}

/** GET /about/capability: null wherever the host does not say. */
export interface Capability {
  cpu: { architecture: 'x86_64' | 'arm64' | null; vendor: string | null; model: string | null; frequency: number | null; count: number; features: string[] };
  memory: { size: number | null; units: string | null; type: string | null; clock: number | null };
}

/** GET /status/check/fastapi: one boolean per check of the diagnostic program. */
export interface DiagnosticResult {
  index: boolean;
  environ: boolean;
  messages: boolean;
  dns: boolean;
  ipv4: boolean;
  internet: boolean;
  cache: boolean;
  persistent_storage: boolean;
  error_handling: boolean;
  get_a_message: boolean;
  lifespan: boolean;
  /** Not part of the answer: /ip/6 of the diagnostic, for /status/check/ipv6. */
  ipv6?: boolean;
}

/** The checks that must hold for /status/check/fastapi to answer 200. */
export const REQUIRED_CHECKS = ['index', 'environ', 'ipv4', 'internet', 'dns', 'error_handling', 'lifespan'] as const;
/** Left out with ?retro-compatibility=true (newer than the legacy runtime). */
export const NEWER_CHECKS = ['get_a_message', 'lifespan'] as const;

export interface HostFamilyCheck {
  egress: boolean;
  dns: boolean;
  domain: boolean;
  http: boolean;
}

/** GET /status/check/host */
export interface HostCheckResult {
  ipv4: HostFamilyCheck;
  ipv6: HostFamilyCheck;
}

/** What the index page shows. */
export interface NodeOverview {
  version: string;
  domain: string;
  uptime_s: number;
  /** The port programs are reached on (443 unless the listener says otherwise). */
  https_port: number;
  executions: number;
  memory_used_mib: number;
  memory_budget_mib: number;
  check_program: string;
  /** node.node_hash: this node's registration on the network, null when not set. */
  node_hash: string | null;
}

/**
 * GET /status/config: the reference's public fields, every section of it. null where
 * aleph-edge has no such setting (never a made-up value); `orchestrator` is ours.
 */
export interface PublicConfig {
  DOMAIN_NAME: string;
  node_hash: string | null;
  version: string;
  references: { API_SERVER: string; CHECK_FASTAPI_VM_ID: string; CONNECTOR_URL: string | null };
  security: {
    USE_JAILER: boolean | null; PRINT_SYSTEM_LOGS: boolean | null; WATCH_FOR_UPDATES: boolean;
    ALLOW_VM_NETWORKING: boolean | null; USE_DEVELOPER_SSH_KEYS: boolean;
  };
  networking: {
    IPV6_ADDRESS_POOL: string | null; IPV6_ALLOCATION_POLICY: string | null; IPV6_SUBNET_PREFIX: number | null;
    IPV6_FORWARDING_ENABLED: boolean | null; USE_NDP_PROXY: boolean | null;
  };
  debug: { SENTRY_DSN_CONFIGURED: boolean; DEBUG_ASYNCIO: boolean | null; EXECUTION_LOG_ENABLED: boolean | null };
  payment: { PAYMENT_RECEIVER_ADDRESS: string | null; AVAILABLE_PAYMENTS: Record<string, unknown> | null; PAYMENT_MONITOR_INTERVAL: number | null };
  computing: {
    ENABLE_QEMU_SUPPORT: boolean; INSTANCE_DEFAULT_HYPERVISOR: string | null;
    ENABLE_CONFIDENTIAL_COMPUTING: boolean; ENABLE_GPU_SUPPORT: boolean;
  };
  orchestrator: { driver: string; max_vms: number; memory_budget_mib: number };
}

/**
 * What node pages ask of the process that owns the node's state (the orchestrator,
 * the login secret, the background samplers). Async and JSON-only on purpose: in a
 * multi-core node the pages are served by workers and every call crosses IPC.
 */
export interface NodeState {
  overview(): Promise<NodeOverview>;
  usage(): Promise<SystemUsage>;
  capability(): Promise<Capability>;
  executions(): Promise<ExecutionInfo[]>;
  checkDiagnostic(): Promise<DiagnosticResult>;
  checkHost(): Promise<HostCheckResult>;
  checkHostIpv6(): Promise<boolean>;
  publicConfig(): Promise<PublicConfig>;
  usageHistory(): Promise<UsageHistory>;
  certificates(): Promise<CertificateExpiry[]>;
  /** The effective configuration, secrets redacted. Only shown after verifyToken. */
  effectiveConfig(): Promise<unknown>;
  /** Constant-time comparison with the node's login secret. */
  verifyToken(token: string): Promise<boolean>;
}

export const NODE_STATE_METHODS = [
  'overview', 'usage', 'capability', 'executions', 'checkDiagnostic', 'checkHost', 'checkHostIpv6',
  'publicConfig', 'effectiveConfig', 'verifyToken', 'usageHistory', 'certificates',
] as const satisfies ReadonlyArray<keyof NodeState>;
export type NodeStateMethod = (typeof NODE_STATE_METHODS)[number];
