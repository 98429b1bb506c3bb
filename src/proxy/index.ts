export { Forwarder } from './forwarder.js';
export type { ForwarderOptions, ForwardLimits, ForwardOutcome } from './forwarder.js';
export type { ForwardInfo } from './headers.js';
