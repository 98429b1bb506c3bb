import { droppedLogLines } from '../common/index.js';
import type { MetricsRegistry } from './registry.js';

/** Log lines this process could not write to stderr (each process counts its own). */
export function countDroppedLogLines(registry: MetricsRegistry): void {
  registry
    .counter('aleph_edge_log_lines_dropped_total', 'Log lines dropped because stderr was not writable (closed pipe, full queue)')
    .collect(droppedLogLines);
}
