export type { Program, ProgramSource, Launch, ProcessLaunch } from './types.js';
export { LocalProgramSource } from './local.js';
