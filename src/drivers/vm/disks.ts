// The disks of a layout, made ready before boot:
//   - read-only images (runtime, code, immutable and data volumes) must be squashfs
//     (magic "hsqs"): anything else is refused before the VM starts, naming the drive;
//   - ephemeral volumes: a fresh sparse ext4 image of size_mib in the VM's own
//     directory at every boot (removed with it). The limit is the filesystem's; the
//     guest's memory is not spent on it, as a tmpfs would be;
//   - persistent volumes: a sparse ext4 image of size_mib made once (temp + rename)
//     and kept across stops, node restarts and new versions. One VM at a time holds
//     it: a second start waits for the first VM to release it (ext4 is not shared).

import { execFile } from 'node:child_process';
import { mkdir, open, rename, rm, stat, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { DriverStartError } from '../types.js';
import type { DiskToMake, VmLayout } from './layout.js';

const run = promisify(execFile);
const SQUASHFS_MAGIC = Buffer.from('hsqs');
/** How long a start waits for a persistent volume still held by a stopping VM. */
const VOLUME_WAIT_MS = 30_000;

/** True when the file starts with the squashfs magic. */
export async function isSquashfs(path: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return false;
  }
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    return bytesRead === 4 && head.equals(SQUASHFS_MAGIC);
  } finally {
    await handle.close();
  }
}

const held = new Map<string, Promise<void>>();

/**
 * Makes every disk of the layout and checks the read-only ones. Returns the release
 * step of the persistent volumes it holds (call it once the VM has exited).
 */
export async function prepareDisks(layout: VmLayout): Promise<() => void> {
  for (const drive of layout.drives) {
    if (drive.fstype === 'squashfs' && !(await isSquashfs(drive.path))) {
      throw new DriverStartError(`the ${drive.role === 'volume' ? `${drive.id} (${drive.mount})` : drive.role} image ${drive.path} is not a squashfs image`);
    }
  }
  const releases: Array<() => void> = [];
  const releaseAll = () => {
    for (const release of releases.splice(0)) release();
  };
  try {
    // Held first: nothing of this boot is made while another VM still uses its volumes.
    for (const disk of layout.disks) if (disk.lifetime === 'persistent') releases.push(await hold(disk.path));
    for (const disk of layout.disks) {
      if (disk.lifetime === 'boot') await makeExt4(disk);
      else await ensurePersistent(disk);
    }
  } catch (err) {
    releaseAll();
    throw err;
  }
  return releaseAll;
}

async function hold(path: string): Promise<() => void> {
  const deadline = Date.now() + VOLUME_WAIT_MS;
  for (let current = held.get(path); current; current = held.get(path)) {
    const left = deadline - Date.now();
    const timedOut = await Promise.race([current.then(() => false), new Promise<boolean>((resolve) => setTimeout(() => resolve(true), Math.max(left, 0)).unref())]);
    if (timedOut) throw new DriverStartError(`the persistent volume ${path} is still in use by another execution`);
  }
  let release!: () => void;
  held.set(path, new Promise<void>((resolve) => (release = resolve)));
  return () => {
    held.delete(path);
    release();
  };
}

const creating = new Map<string, Promise<void>>();

async function ensurePersistent(disk: DiskToMake): Promise<void> {
  try {
    if ((await stat(disk.path)).isFile()) return; // kept as it is: resizing is not done (its data stays intact)
  } catch {
    // first use
  }
  let pending = creating.get(disk.path);
  if (!pending) {
    pending = (async () => {
      await mkdir(dirname(disk.path), { recursive: true, mode: 0o700 });
      const temp = `${disk.path}.${process.pid}.tmp`;
      try {
        await makeExt4({ ...disk, path: temp });
        await rename(temp, disk.path);
      } finally {
        await rm(temp, { force: true });
      }
    })().finally(() => creating.delete(disk.path));
    creating.set(disk.path, pending);
  }
  await pending;
}

/** A sparse file of sizeMib holding an empty ext4 filesystem (no reserved blocks, root-owned). */
async function makeExt4(disk: DiskToMake): Promise<void> {
  await rm(disk.path, { force: true });
  await (await open(disk.path, 'wx', 0o600)).close();
  await truncate(disk.path, disk.sizeMib * 1024 * 1024);
  try {
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'nodiscard,root_owner=0:0', disk.path], { timeout: 60_000 });
  } catch (err) {
    await rm(disk.path, { force: true });
    const code = (err as NodeJS.ErrnoException).code;
    throw new DriverStartError(code === 'ENOENT' ? 'mkfs.ext4 is not installed (install e2fsprogs)' : `mkfs.ext4 ${disk.path} failed: ${(err as Error).message.split('\n')[0]}`);
  }
}
