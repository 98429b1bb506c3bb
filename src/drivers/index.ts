export type { Driver, Instance, InstanceNetwork, Endpoint, Slot, ExitInfo, OutputStream, WarmVm, WarmBooter } from './types.js';
export { DriverStartError, formatEndpoint } from './types.js';
export { openGuestLink, openUnixGuestLink, guestEnv, GUEST_LINK_DEFAULTS, GUEST_LINK_LOOPBACK, type GuestLink, type GuestLinkOptions, type UnixGuestLink, type UnixGuestLinkOptions } from './guest-link.js';
export { ProcessDriver, type ProcessDriverOptions, type OutputLimits } from './process/index.js';
export { waitForHttp, ReadinessTimeoutError, type WaitForHttpOptions, type ReadinessResult } from './readiness.js';
export { createDriver, DRIVER_NAMES, type DriverName, type DriverOptions } from './factory.js';
export { QemuDriver, checkQemuOptions, type QemuDriverOptions } from './qemu/index.js';
export { FirecrackerDriver, checkFirecrackerOptions, type FirecrackerDriverOptions } from './firecracker/index.js';
export {
  NetworkPool, executableIpv6, guestNetworkArgs, networkConfigV2, checkPortRequests, portRequestsFromAggregate, PortForwardError, NftablesError,
  type AcquireOptions, type Ipv6Plan, type Lease, type MappedPorts, type NetworkPoolOptions, type PortRequest, type VmType,
} from './net/index.js';
export { buildRuntime, RUNTIME_PACKAGES, type RuntimeImage } from './image/index.js';
export { ASGI_SHUTDOWN_S, stopGrace } from './stop-grace.js';
