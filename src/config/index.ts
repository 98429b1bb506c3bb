// Public surface of the config component.
export type * from './types.js';
export { ConfigError, formatIssue, type ConfigIssue } from './errors.js';
export { checkConfig, defaultSettings, loadConfig, parseConfig } from './load.js';
export { parseDuration, parseSize } from './duration.js';
export { defaultAlephSettings, defaultDriversSettings, defaultNodeSettings, DIAGNOSTIC_PROGRAM_HASH, ALEPH_VM_VERSION } from './schema.js';
