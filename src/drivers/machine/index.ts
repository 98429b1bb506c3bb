export { ensureMachineDisk, eraseMachine } from './disk.js';
export { allocatePorts, type MappedPort, type MappedPorts } from './ports.js';
export { cloudInitFiles, writeCloudInitDrive, type CloudInitFiles, type CloudInitSpec, type MachineNetwork } from './cloud-init.js';
export { machineDrives, volumeMounts, type MachineDrive } from './volumes.js';
