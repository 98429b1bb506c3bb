export * from './errors.js';
export * from './hash.js';
export * from './hostname.js';
export * from './clock.js';
export * from './log.js';
export * from './proc.js';
export * from './guest.js';
export * from './firecracker-limits.js';
