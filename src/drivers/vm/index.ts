export { checkMount, guestDevice, GUEST_PATHS, hostLabel, STOP_TIMEOUT_S, vmLayout, type DiskToMake, type DriveRole, type LayoutInput, type MountMode, type VmDrive, type VmLayout } from './layout.js';
export { isSquashfs, prepareDisks } from './disks.js';
export { SnapshotStore, snapshotKey, type SnapshotEntry } from './snapshots.js';
