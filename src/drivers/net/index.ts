export { NetworkPool, parseCidr, type AcquireOptions, type Lease, type NetworkPoolOptions } from './pool.js';
export { executableIpv6, VM_TYPES, type Ipv6Plan, type VmType } from './ipv6.js';
export { checkPortRequests, portRequestsFromAggregate, PortForwardError, type MappedPorts, type PortRange, type PortRequest } from './ports.js';
export { NftablesError } from './nft.js';
export { guestNetworkArgs, networkConfigV2, networkOf, type NetworkConfigV2 } from './guest.js';
