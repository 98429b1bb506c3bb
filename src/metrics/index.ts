export { MetricsRegistry, Counter, Gauge, Histogram, DEFAULT_SECONDS_BUCKETS } from './registry.js';
export type { Labels } from './registry.js';
export { countDroppedLogLines } from './log-lines.js';
export { mergeExpositions, sumFamily } from './merge.js';
export type { ExpositionPart } from './merge.js';
