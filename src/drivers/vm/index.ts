// What the VM drivers (qemu, firecracker) share: the boot layout and sequence, the
// VMM process, disks, snapshots and start-up checks. No driver imports another.
export { checkMount, guestDevice, GUEST_PATHS, hostLabel, STOP_TIMEOUT_S, vmLayout, type DiskToMake, type DriveRole, type LayoutInput, type MountMode, type VmDrive, type VmLayout } from './layout.js';
export { isSquashfs, prepareDisks } from './disks.js';
export { fileIdentity, NODE_VERSION, SnapshotStore, snapshotKey, type SnapshotEntry } from './snapshots.js';
export { AGENT_VSOCK_PORT, controlGuest, restoreCommands, type ControlChannel } from './control.js';
export { bootVm, codeKind, tapNetwork, vmLaunchOf, vmRunDir, type PreparedBoot, type VmBootSteps, type VmNetwork } from './boot.js';
export { VmProcess, type Cleanup, type VmProcessHooks } from './vm-process.js';
export { checkExecutable, checkFile, findExecutable, IMAGE_HINT, safeName, setupError } from './checks.js';
