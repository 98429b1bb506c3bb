export * from './errors.js';
export * from './hash.js';
export * from './clock.js';
export * from './log.js';
export * from './proc.js';
export * from './guest.js';
export * from './firecracker-limits.js';
export * from './ipv6.js';
