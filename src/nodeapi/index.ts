export { NodePages } from './pages.js';
export { LocalNodeState, selfAddress, CHECK_CACHE_MS } from './state.js';
export type { LocalNodeStateDeps, NodeListener } from './state.js';
export { LoginSecret } from './secret.js';
export { SystemSampler } from './system.js';
export { diagnosticProgram, DIAGNOSTIC_DIR } from './diagnostic.js';
export { NODE_STATE_METHODS, REQUIRED_CHECKS } from './types.js';
export type {
  NodeState, NodeStateMethod, SystemUsage, UsageHistory, UsageSample, CertificateExpiry, ExecutionState, Capability, DiagnosticResult, HostCheckResult, NodeOverview, PublicConfig,
} from './types.js';
