export type { Program, ProgramSource, Launch, ProcessLaunch } from './types.js';
