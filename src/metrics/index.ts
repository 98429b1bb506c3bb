export { MetricsRegistry, Counter, Gauge, Histogram, DEFAULT_SECONDS_BUCKETS, familyTotal, renderExposition } from './registry.js';
export type { Labels, FamilySnapshot, ValueSeries, HistogramSeries } from './registry.js';
export { countDroppedLogLines } from './log-lines.js';
export { mergeSnapshots } from './merge.js';
export type { SnapshotPart } from './merge.js';
