export { WorkerPool } from './pool.js';
export type { PoolOptions, PoolServices } from './pool.js';
export { runWorker } from './worker.js';
