export { NetworkPool, parseCidr, type Lease, type NetworkPoolOptions } from './pool.js';
