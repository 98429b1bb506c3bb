export type { Driver, Instance, Endpoint, Slot, ExitInfo } from './types.js';
export { DriverStartError, formatEndpoint } from './types.js';
export { ProcessDriver, type ProcessDriverOptions, type OutputLimits } from './process/index.js';
export { waitForHttp, ReadinessTimeoutError, type WaitForHttpOptions, type ReadinessResult } from './readiness.js';
export { createDriver, DRIVER_NAMES, type DriverName, type DriverOptions } from './factory.js';
