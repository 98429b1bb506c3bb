export type { Program, ProgramSource, Launch, ProcessLaunch, AsgiServe, ProcessSandbox } from './types.js';
export { LocalProgramSource } from './local.js';
export { AlephProgramSource, MessageStream } from './aleph/index.js';
export type { AlephVmExtras, AlephVmVolume, VmLaunch, MachineLaunch, MachinePort } from './types.js';
