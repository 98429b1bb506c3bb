export type { Driver, Instance, Endpoint, Slot, ExitInfo } from './types.js';
export { DriverStartError, formatEndpoint } from './types.js';
export { openGuestLink, guestEnv, GUEST_LINK_DEFAULTS, type GuestLink, type GuestLinkOptions } from './guest-link.js';
export { ProcessDriver, type ProcessDriverOptions, type OutputLimits } from './process/index.js';
export { waitForHttp, ReadinessTimeoutError, type WaitForHttpOptions, type ReadinessResult } from './readiness.js';
export { createDriver, DRIVER_NAMES, type DriverName, type DriverOptions } from './factory.js';
export { QemuDriver, checkQemuOptions, type QemuDriverOptions } from './qemu/index.js';
export { FirecrackerDriver, checkFirecrackerOptions, type FirecrackerDriverOptions } from './firecracker/index.js';
export { NetworkPool, type Lease, type NetworkPoolOptions } from './net/index.js';
