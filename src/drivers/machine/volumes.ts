// An instance's volumes as extra virtio disks, after the root disk (vda) and the
// cloud-init drive (vdb), in the message's order (as the reference attaches its
// host volumes): vdc, vdd, ... Each carries a serial (`vol<n>`), so the guest also
// finds it at /dev/disk/by-id/virtio-vol<n>. Immutable volumes are the downloaded
// blob, read-only, whatever it holds; ephemeral ones a fresh sparse ext4 image in
// the VM's run folder at every boot; persistent ones an ext4 image next to the root
// disk, made once and kept until erased (src/drivers/vm/disks.ts makes both).

import path from 'node:path';
import type { AlephVmVolume } from '../../programs/index.js';
import { guestDevice, type DiskToMake } from '../vm/index.js';

/** A volume as qemu attaches it. */
export interface MachineDrive {
  id: string; // qemu drive id and the virtio serial
  path: string;
  readOnly: boolean;
  /** Its block device in a Linux guest. */
  device: string;
  mount: string;
}

/** vda is the root disk, vdb the cloud-init drive. */
const FIRST_VOLUME_INDEX = 2;

export function machineDrives(volumes: AlephVmVolume[], runDir: string): { drives: MachineDrive[]; disks: DiskToMake[] } {
  const drives: MachineDrive[] = [];
  const disks: DiskToMake[] = [];
  for (const [index, volume] of volumes.entries()) {
    const id = `vol${index}`;
    let file = volume.source;
    if (volume.kind === 'ephemeral') {
      file = path.join(runDir, `${id}.img`);
      disks.push({ path: file, sizeMib: volume.sizeMib, lifetime: 'boot' });
    } else if (volume.kind === 'persistent') {
      disks.push({ path: file, sizeMib: volume.sizeMib, lifetime: 'persistent' });
    }
    drives.push({ id, path: file, readOnly: volume.readOnly, device: `/dev/${guestDevice(FIRST_VOLUME_INDEX + index)}`, mount: volume.mount });
  }
  return { drives, disks };
}

/**
 * fstab options of every volume: nofail, so a volume without a filesystem the guest
 * knows never blocks its boot; no device timeout (0 = none in systemd), because the
 * disk is always attached but a slow boot (TCG on a loaded host) announces it after
 * systemd's default 90 s, which left later boots without their volumes.
 */
const MOUNT_OPTIONS = 'nofail,x-systemd.device-timeout=0';

/** cloud-init `mounts` entries (fstab fields) mounting each volume at the message's mount point. */
export function volumeMounts(drives: MachineDrive[]): string[][] {
  return drives.map((d) => [d.device, d.mount, 'auto', `${d.readOnly ? 'ro' : 'defaults'},${MOUNT_OPTIONS}`, '0', '0']);
}
