export { AlephEdgeNode } from './node.js';
export type { NodeOptions } from './node.js';
export { NodeAlreadyRunningError } from './state-lock.js';
