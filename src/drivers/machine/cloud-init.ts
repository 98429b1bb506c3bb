// The cloud-init NoCloud drive the node makes for each instance boot, in the
// reference's shapes (aleph-vm controllers/qemu/cloudinit.py): meta-data with the
// instance id and hostname, user-data (#cloud-config) with the owner's keys for the
// default user and root, network-config v2 with the VM's static addresses. Written
// as JSON, which is YAML. The ISO is made by genisoimage (volume id "cidata", Joliet
// + Rock Ridge, as cloud-localds does).

import { execFile } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { DriverStartError } from '../types.js';

const run = promisify(execFile);

export interface MachineNetwork {
  ipv4: string; // address/prefix
  gateway4: string;
  ipv6?: string; // address/prefix
  gateway6?: string;
  nameservers: string[];
}

export interface CloudInitSpec {
  hostname: string;
  authorizedKeys: string[];
  /** Package updates only when the VM can reach the internet (they would time out otherwise). */
  internet: boolean;
  network: MachineNetwork;
  /** cloud-init `mounts` (fstab fields): the instance's volumes at their mount points. */
  mounts?: string[][];
}

export interface CloudInitFiles {
  'meta-data': string;
  'user-data': string;
  'network-config': string;
}

export function cloudInitFiles(spec: CloudInitSpec): CloudInitFiles {
  // Stable across boots: cloud-init runs its per-instance steps (keys, host keys) once per disk.
  const metaData = { 'instance-id': `iid-instance-${spec.hostname}`, 'local-hostname': spec.hostname };
  const userData: Record<string, unknown> = {
    hostname: spec.hostname,
    disable_root: false,
    ssh_pwauth: false,
    ssh_authorized_keys: spec.authorizedKeys,
    resize_rootfs: true,
  };
  if (spec.mounts?.length) userData.mounts = spec.mounts;
  if (spec.internet) {
    userData.package_update = true;
    userData.packages = ['qemu-guest-agent'];
    userData.runcmd = ['systemctl start qemu-guest-agent.service'];
  }
  const ethernet: Record<string, unknown> = {
    // The interface name differs between distributions: matched by the virtio driver.
    match: { driver: 'virtio_net' },
    addresses: [spec.network.ipv4, ...(spec.network.ipv6 ? [spec.network.ipv6] : [])],
    gateway4: spec.network.gateway4,
    ...(spec.network.gateway6 ? { gateway6: spec.network.gateway6 } : {}),
    nameservers: { addresses: spec.network.nameservers },
  };
  const network = { version: 2, ethernets: { eth0: ethernet } };
  return {
    'meta-data': JSON.stringify(metaData, null, 2) + '\n',
    'user-data': '#cloud-config\n' + JSON.stringify(userData, null, 2) + '\n',
    'network-config': JSON.stringify(network, null, 2) + '\n',
  };
}

/** Writes the NoCloud ISO to `file` (replacing it). */
export async function writeCloudInitDrive(file: string, spec: CloudInitSpec, tool = 'genisoimage'): Promise<void> {
  const dir = await mkdtemp(path.join(path.dirname(file), 'cidata-'));
  try {
    const files = cloudInitFiles(spec);
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text, { mode: 0o600 });
    const temp = path.join(dir, 'cidata.iso');
    await run(tool, ['-quiet', '-output', temp, '-volid', 'cidata', '-joliet', '-rock', ...Object.keys(files)], { cwd: dir, timeout: 30_000 });
    await rename(temp, file);
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new DriverStartError(`${tool} not found (install genisoimage)`);
    throw new DriverStartError(`cannot make the cloud-init drive: ${(e.stderr ?? e.message).trim().split('\n')[0]}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
