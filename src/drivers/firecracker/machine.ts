// Instances (MachineLaunch) under Firecracker, as the reference runs them
// (aleph-vm controllers/firecracker/instance.py): the node's kernel (Firecracker has
// no firmware to boot the image's own), the instance's disk as the root drive,
// read-write (Firecracker appends root=/dev/vda rw), the cloud-init NoCloud drive
// read-only after it, and one tap from the pool with the owner's port forwards. No
// initramfs: the image's own init runs. Firecracker reads raw images only, so the
// instance's disk here is `<stateDir>/rootfs.raw`, converted once from the parent
// (qcow2 or raw) with qemu-img, grown to size_mib, and its ext4 grown to fill it
// (as the reference sizes the filesystem when it makes the disk); a partitioned
// image cannot be the root drive (no partition is named), see docs/instances.md.

import { execFile } from 'node:child_process';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { forbiddenBootArg, type Logger } from '../../common/index.js';
import type { MachineLaunch, Program } from '../../programs/index.js';
import { exists } from '../host/index.js';
import { machineTap, MACHINE_STOP_GRACE_MS, writeCloudInitDrive } from '../machine/index.js';
import { networkOf, type NetworkPool } from '../net/index.js';
import { DriverStartError, type Instance, type Slot } from '../types.js';
import { VmProcess, vmRunDir, type Cleanup } from '../vm/index.js';
import { FirecrackerApi } from './api.js';

const run = promisify(execFile);

export interface FirecrackerMachineContext {
  firecracker: string;
  kernel: string;
  runDir: string;
  arch: 'x86_64' | 'aarch64';
  apiTimeoutMs: number;
  stopGraceMs: number;
  extraBootArgs: string;
  pool: NetworkPool;
  log: Logger;
  console: Logger;
}

/** The instance's raw disk beside its qcow2 name (the qemu driver's). */
export function rawDiskOf(launch: MachineLaunch): string {
  return join(launch.stateDir, 'rootfs.raw');
}

/**
 * Makes the instance's raw disk when it has none: the parent converted (sparse) to a
 * temporary file, grown to size_mib, its ext4 grown to fill it, then renamed into place.
 * An existing disk is kept as it is: it holds the owner's data.
 */
export async function ensureRawDisk(launch: MachineLaunch, qemuImg = 'qemu-img'): Promise<{ disk: string; created: boolean }> {
  const disk = rawDiskOf(launch);
  if (await exists(disk)) return { disk, created: false };
  const fresh = !(await exists(launch.stateDir));
  const temp = `${disk}.${process.pid}.tmp`;
  try {
    // Refused before any copy: the parent's virtual size must fit size_mib.
    const info = JSON.parse((await run(qemuImg, ['info', '--output=json', '-f', launch.parentFormat, launch.parent], { timeout: 60_000 })).stdout) as { 'virtual-size': number };
    const wanted = launch.sizeMib * 1024 * 1024;
    if (wanted < info['virtual-size']) throw new DriverStartError(`size_mib ${launch.sizeMib} is smaller than the parent image (${Math.ceil(info['virtual-size'] / 1024 / 1024)} MiB)`);
    await mkdir(launch.stateDir, { recursive: true, mode: 0o700 });
    await rm(temp, { force: true });
    await run(qemuImg, ['convert', '-q', '-f', launch.parentFormat, '-O', 'raw', launch.parent, temp], { timeout: 10 * 60_000 });
    const handle = await open(temp, 'r+');
    try {
      await handle.truncate(wanted);
    } finally {
      await handle.close();
    }
    if (await isExt4(temp)) {
      // e2fsck first: resize2fs refuses a filesystem not checked since its last mount.
      await run('e2fsck', ['-f', '-p', temp], { timeout: 10 * 60_000 }).catch((err: { code?: number }) => {
        if (typeof err.code !== 'number' || err.code > 1) throw err; // 1: errors corrected
      });
      await run('resize2fs', [temp], { timeout: 10 * 60_000 });
    }
    await rename(temp, disk);
  } catch (error) {
    await rm(fresh ? launch.stateDir : temp, { recursive: true, force: true });
    if (error instanceof DriverStartError) throw error;
    const e = error as NodeJS.ErrnoException & { stderr?: string; path?: string };
    if (e.code === 'ENOENT') throw new DriverStartError(`${e.path ?? qemuImg} not found (install qemu-utils and e2fsprogs)`);
    throw new DriverStartError(`cannot make the instance's raw disk: ${(e.stderr ?? e.message).trim().split('\n')[0]}`);
  }
  return { disk, created: true };
}

/** The ext4 superblock magic at 1024 + 56. */
async function isExt4(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const magic = Buffer.alloc(2);
    await handle.read(magic, 0, 2, 1024 + 56);
    return magic.readUInt16LE(0) === 0xef53;
  } finally {
    await handle.close();
  }
}

/** The reference's boot arguments for a writable root (Firecracker appends root=/dev/vda rw). */
export function machineBootArgs(arch: 'x86_64' | 'aarch64', extraBootArgs: string): string {
  const args = ['console=ttyS0', 'reboot=k', 'panic=1', 'pci=off', 'swiotlb=noforce', 'random.trust_cpu=on'];
  if (arch === 'x86_64') args.push('i8042.noaux', 'i8042.nomux', 'i8042.dumbkbd');
  const extra = extraBootArgs.split(/\s+/).filter(Boolean);
  for (const arg of extra) {
    const why = forbiddenBootArg(arg);
    if (why) throw new DriverStartError(`drivers.firecracker.extra_boot_args: ${why}`);
  }
  return [...args, ...extra].join(' ');
}

export async function startFirecrackerMachine(ctx: FirecrackerMachineContext, program: Program, launch: MachineLaunch, slot: Slot): Promise<Instance> {
  // Refused rather than booted without them: the owner's data would seem lost.
  if (launch.volumes.length > 0) throw new DriverStartError('volumes of instances are attached under the qemu driver only (not yet under firecracker)');
  const cleanups: Cleanup[] = [];
  try {
    const { disk, created } = await ensureRawDisk(launch);
    const tap = await machineTap(ctx.pool, program, launch, slot, (step) => cleanups.push(step));
    const dir = await vmRunDir(ctx.runDir, slot.executionId, cleanups);
    const cloudInit = join(dir, 'cidata.iso');
    await writeCloudInitDrive(cloudInit, { hostname: launch.hostname, authorizedKeys: launch.authorizedKeys, internet: launch.internet, network: tap.network });
    const apiSocket = join(dir, 'api.sock');
    const api = new FirecrackerApi(apiSocket, ctx.apiTimeoutMs);
    const vm = await VmProcess.spawn(ctx.firecracker, ['--api-sock', apiSocket, '--id', `aleph-${tap.lease.slot}`], {
      endpoint: tap.endpoint,
      stopGraceMs: Math.max(ctx.stopGraceMs, MACHINE_STOP_GRACE_MS),
      log: ctx.log,
      console: ctx.console,
      // aarch64 has no i8042: SIGTERM, then SIGKILL after the grace.
      hooks: ctx.arch === 'x86_64' ? { graceful: async () => void (await api.put('/actions', { action_type: 'SendCtrlAltDel' })) } : {},
      cleanups: cleanups.splice(0),
      output: slot.output, // the serial console: the instance's log
    });
    vm.readyWhenStarted = true;
    vm.mappedPorts = tap.mappedPorts;
    vm.network = networkOf(tap.lease);
    try {
      await api.waitReady(vm.exited);
      await api.put('/boot-source', { kernel_image_path: ctx.kernel, boot_args: machineBootArgs(ctx.arch, ctx.extraBootArgs) });
      await api.put('/drives/rootfs', { drive_id: 'rootfs', path_on_host: disk, is_root_device: true, is_read_only: false });
      await api.put('/drives/cidata', { drive_id: 'cidata', path_on_host: cloudInit, is_root_device: false, is_read_only: true });
      await api.put('/machine-config', { vcpu_count: program.vcpus, mem_size_mib: program.memoryMib, smt: false });
      await api.put('/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: tap.lease.tap, guest_mac: guestMac(tap.lease.slot) });
      await api.put('/actions', { action_type: 'InstanceStart' });
    } catch (err) {
      await vm.stop();
      throw new DriverStartError(`firecracker: ${(err as Error).message}`);
    }
    ctx.log.info('instance vm running', { pid: vm.pid, tap: tap.lease.tap, memory_mib: program.memoryMib, vcpus: program.vcpus, new_disk: created, ports: Object.entries(tap.mappedPorts).map(([p, m]) => `${m.host}->${p}`).join(' ') });
    return vm;
  } catch (err) {
    for (const step of cleanups.splice(0).reverse()) await Promise.resolve(step()).catch(() => {});
    if (err instanceof DriverStartError) throw err;
    throw new DriverStartError(`firecracker: ${(err as Error).message}`, { cause: err });
  }
}

/** A locally administered MAC derived from the pool slot, stable across reuse. */
export function guestMac(slot: number): string {
  return `06:00:ac:10:${((slot >> 8) & 255).toString(16).padStart(2, '0')}:${(slot & 255).toString(16).padStart(2, '0')}`;
}
