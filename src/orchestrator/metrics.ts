import type { MetricsRegistry } from '../metrics/index.js';

const BOOT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60];

/** The orchestrator's metric families, registered once per registry. */
export function orchestratorMetrics(registry: MetricsRegistry) {
  return {
    boots: registry.counter('aleph_edge_boots_total', 'Executions booted successfully'),
    bootFailures: registry.counter('aleph_edge_boot_failures_total', 'Boots that failed, by reason'),
    bootDuration: registry.histogram('aleph_edge_boot_duration_seconds', 'Time from boot start to ready, by phase', BOOT_BUCKETS),
    evictions: registry.counter('aleph_edge_evictions_total', 'Idle executions evicted to admit another'),
    rejections: registry.counter('aleph_edge_acquire_rejections_total', 'Requests refused by the orchestrator, by reason'),
    stops: registry.counter('aleph_edge_execution_stops_total', 'Executions stopped, by reason'),
    transitions: registry.counter('aleph_edge_execution_transitions_total', 'Execution state transitions, by target state'),
    executions: registry.gauge('aleph_edge_executions', 'Executions by state'),
    warmVms: registry.gauge('aleph_edge_warm_vms', 'Warm-pool VMs with no program yet, by state (ready, booting)'),
    warmTakes: registry.counter('aleph_edge_warm_vm_attaches_total', 'Programs started on a warm-pool VM'),
  };
}

export type OrchestratorMetrics = ReturnType<typeof orchestratorMetrics>;
