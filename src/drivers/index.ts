export type { Driver, Instance, Endpoint, Slot, ExitInfo } from './types.js';
export { DriverStartError, formatEndpoint } from './types.js';
