export { ensureMachineDisk, eraseMachine } from './disk.js';
export { allocatePorts, type MappedPort, type MappedPorts } from './ports.js';
export { cloudInitFiles, writeCloudInitDrive, type CloudInitFiles, type CloudInitSpec, type MachineNetwork } from './cloud-init.js';
export { machineDrives, volumeMounts, type MachineDrive } from './volumes.js';
export { machineTap, MACHINE_NAMESERVERS, MACHINE_STOP_GRACE_MS, type MachineTap } from './tap.js';
