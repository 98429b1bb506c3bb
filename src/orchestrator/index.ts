export type { Lease, ExecutionGateway, ExecutionInfo, ExecutionState, GuestServices, GuestSession } from './types.js';
export { Orchestrator } from './orchestrator.js';
export type { OrchestratorDeps, ReadinessProbe, StopReason } from './orchestrator.js';
export type { BackoffPolicy } from './backoff.js';
export type { KeepReason, KeptProgram } from './keeper.js';
export type { LogEntry, LogLimits, LogListener } from './logs.js';
