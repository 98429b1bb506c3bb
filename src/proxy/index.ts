export { Forwarder } from './forwarder.js';
export type { ForwarderOptions, ForwardOutcome } from './forwarder.js';
export type { ForwardInfo } from './headers.js';
