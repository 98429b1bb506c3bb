// An instance's own disk: a qcow2 overlay over its parent image, made at first start
// and kept across stops and node restarts until the owner erases it.
//
//   <stateDir>/parent.<format>   a hard link to the cached parent (a copy across file
//                                systems), so evicting the artifact cache never pulls
//                                the backing file from under a disk
//   <stateDir>/rootfs.qcow2      the overlay (qemu-img create -b parent -F format), of
//                                the message's size_mib
//   <stateDir>/ports.json        the host ports allocated to the VM (ports.ts)

import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { copyFile, link, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { MachineLaunch } from '../../programs/index.js';
import { exists } from '../host/index.js';
import { DriverStartError } from '../types.js';

const run = promisify(execFile);

/** Makes the instance's disk when it has none yet; an existing disk is kept as it is. */
export async function ensureMachineDisk(launch: MachineLaunch, qemuImg = 'qemu-img'): Promise<{ created: boolean }> {
  if (await exists(launch.disk)) return { created: false };
  await mkdir(launch.stateDir, { recursive: true, mode: 0o700 });
  const parent = path.join(launch.stateDir, `parent.${launch.parentFormat}`);
  if (!(await exists(parent))) {
    const temp = `${parent}.${process.pid}.tmp`;
    await rm(temp, { force: true });
    try {
      await link(launch.parent, temp);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      await copyFile(launch.parent, temp, constants.COPYFILE_FICLONE);
    }
    await rename(temp, parent);
  }
  const temp = `${launch.disk}.${process.pid}.tmp`;
  await rm(temp, { force: true });
  try {
    await run(qemuImg, ['create', '-q', '-f', 'qcow2', '-F', launch.parentFormat, '-b', parent, temp, `${launch.sizeMib}M`], { timeout: 60_000 });
  } catch (error) {
    await rm(temp, { force: true });
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new DriverStartError(`${qemuImg} not found (install qemu-utils)`);
    throw new DriverStartError(`cannot create the instance's disk: ${(e.stderr ?? e.message).trim().split('\n')[0]}`);
  }
  await rename(temp, launch.disk);
  return { created: true };
}

/** Removes the instance's disk and state (the owner's erase); the VM must not be running. */
export async function eraseMachine(launch: MachineLaunch): Promise<boolean> {
  const had = await exists(launch.stateDir);
  await rm(launch.stateDir, { recursive: true, force: true });
  return had;
}
