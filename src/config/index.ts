// Public surface of the config component.
export type * from './types.js';
export { ConfigError, formatIssue, type ConfigIssue } from './errors.js';
export { checkConfig, defaultSettings, loadConfig, parseConfig } from './load.js';
export { parseDuration, parseSize } from './duration.js';
export { defaultAlephSettings, defaultControlSettings, defaultDriversSettings, defaultNodeSettings, DEFAULT_ALLOCATION_SIGNERS, DIAGNOSTIC_PROGRAM_HASH } from './schema.js';
