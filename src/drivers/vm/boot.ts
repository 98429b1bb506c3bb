// The one boot sequence of a VM program, for qemu and Firecracker alike: the VM's
// network (and its guest link), its directory, the layout's disks, the initrd (base
// initramfs + this program's archive), then the driver's own launch of its VMM and
// the wait until the guest is on its way. Each step registers how to undo it: on a
// failure before the VMM runs they run at once, in reverse; once it runs they are
// its cleanups (run when it has exited). The driver-specific parts are the hooks.

import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { shortHash, type Logger } from '../../common/index.js';
import type { Program, VmLaunch } from '../../programs/index.js';
import { guestEnv, openGuestLink } from '../guest-link.js';
import { buildProgramArchive, writeConcatenated } from '../image/index.js';
import { networkOf, type Lease, type NetworkPool } from '../net/index.js';
import { DriverStartError, type Endpoint, type InstanceNetwork, type Slot } from '../types.js';
import { safeName } from './checks.js';
import { prepareDisks } from './disks.js';
import { vmLayout, type VmLayout } from './layout.js';
import type { Cleanup, VmProcess } from './vm-process.js';

/** Where the program answers and how it reaches its guest API; drivers extend it with their own. */
export interface VmNetwork {
  endpoint: Endpoint;
  /** The addresses shown in the executions lists (tap networking). */
  network?: InstanceNetwork;
  /** Where the node serves this execution's guest API, when it has one. */
  guestApi?: Endpoint;
  /** ALEPH_API_HOST as the guest sees it ('' = no guest API). */
  apiHost: string;
}

/** Everything prepared for the VMM: the hooks' input. */
export interface PreparedBoot<N extends VmNetwork> {
  program: Program;
  launch: VmLaunch;
  slot: Slot;
  net: N;
  /** The VM's own directory on the host (the jail's root when jailed). */
  dir: string;
  layout: VmLayout;
  /** The program's archive, appended to the base initramfs in `initrd`. */
  archive: Buffer;
  initrd: string;
  baseInitramfs: string;
  log: Logger;
  /** Undo steps so far; the VMM's process takes them over once launch() returns it. */
  cleanups: Cleanup[];
}

export interface VmBootSteps<N extends VmNetwork> {
  /** For error messages: 'qemu', 'firecracker'. */
  driver: string;
  log: Logger;
  /** The base initramfs when the program brings none. */
  initramfs: string;
  /** A runtime image for programs that name none ('' or absent = none). */
  defaultRuntime?: string;
  /** This VM's network (a tap lease or user-mode forwarding) and its guest link. */
  network(launch: VmLaunch, cleanups: Cleanup[]): Promise<N>;
  /** The directory for this VM's files. */
  directory(net: N, cleanups: Cleanup[]): Promise<string>;
  /** Starts the VMM (or restores it); the returned process takes over the cleanups. */
  launch(boot: PreparedBoot<N>): Promise<VmProcess>;
  /** Waits until the guest is on its way (configured, started); a throw stops the VM. */
  started(vm: VmProcess, boot: PreparedBoot<N>): Promise<void>;
}

export async function bootVm<N extends VmNetwork>(program: Program, slot: Slot, steps: VmBootSteps<N>): Promise<VmProcess> {
  const launch = vmLaunchOf(program);
  const cleanups: Cleanup[] = [];
  try {
    const net = await steps.network(launch, cleanups);
    const dir = await steps.directory(net, cleanups);
    // The guest API's variables win over the program's own: they name this execution's endpoint.
    const env = net.apiHost ? { ...launch.env, ...guestEnv(net.apiHost, program.sender ?? '') } : launch.env;
    const layout = vmLayout({ hash: program.hash, launch: { ...launch, env }, code: await codeKind(launch.code), vmDir: dir, defaultRuntime: steps.defaultRuntime });
    cleanups.push(await prepareDisks(layout));
    const archive = await buildProgramArchive({ codeDir: layout.codeDir, files: layout.files }).catch((err: Error) => {
      throw new DriverStartError(`cannot pack the program's code: ${err.message}`);
    });
    const baseInitramfs = launch.initramfs || steps.initramfs;
    const initrd = join(dir, 'initrd');
    await writeConcatenated(initrd, [baseInitramfs, archive]);
    const boot: PreparedBoot<N> = { program, launch, slot, net, dir, layout, archive, initrd, baseInitramfs, log: steps.log, cleanups };
    const vm = await steps.launch(boot);
    for (const step of cleanups.splice(0)) vm.onCleanup(step);
    if (net.guestApi) vm.guestApi = net.guestApi;
    if (net.network) vm.network = net.network;
    try {
      await steps.started(vm, boot);
    } catch (err) {
      await vm.stop();
      throw new DriverStartError(`${steps.driver}: ${(err as Error).message}`, { cause: err });
    }
    return vm;
  } catch (err) {
    for (const step of cleanups.splice(0).reverse()) await Promise.resolve(step()).catch(() => {});
    if (err instanceof DriverStartError) throw err;
    throw new DriverStartError(`${steps.driver}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * A tap from the pool for this execution, with the guest link on the tap's host
 * address, for this guest only (other guests can route there too). A program's
 * IPv6 is the monitor's address for its hash (vm type 1 or 2).
 */
export async function tapNetwork(pool: NetworkPool, program: Program, launch: VmLaunch, slot: Slot, cleanups: Cleanup[], tapOwner?: { uid: number; gid: number }): Promise<VmNetwork & { lease: Lease }> {
  const lease = await pool.acquire(slot.executionId, {
    internet: launch.internet, hash: program.hash, vmType: program.persistent ? 'persistent_program' : 'microvm', tapOwner,
  });
  cleanups.push(() => pool.release(lease));
  const net: VmNetwork & { lease: Lease } = { lease, endpoint: { kind: 'tcp', host: lease.guestIp, port: 8080 }, network: networkOf(lease), apiHost: '' };
  if (slot.guestApi) {
    const link = await openGuestLink({ socket: slot.guestApi.socket, host: lease.hostIp, allowedPeers: [lease.guestIp] });
    cleanups.push(() => link.close()); // before the tap goes (cleanups run in reverse)
    net.guestApi = { kind: 'tcp', host: link.host, port: link.port };
    net.apiHost = link.url;
  }
  return net;
}

/** A fresh directory for one VM under `runDir`, removed with the VM. */
export async function vmRunDir(runDir: string, executionId: string, cleanups: Cleanup[]): Promise<string> {
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(runDir, `${safeName(executionId)}-`));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export function vmLaunchOf(program: Program): VmLaunch {
  if (program.launch.kind !== 'vm') {
    throw new DriverStartError(`program ${program.name || shortHash(program.hash)} has no VM image: set code (and entrypoint) in its [[programs.local]] entry`);
  }
  return program.launch;
}

/** 'dir' (packed into the initramfs), 'image' (a read-only drive) or 'none'. */
export async function codeKind(code: string): Promise<'dir' | 'image' | 'none'> {
  if (code === '') return 'none';
  try {
    return (await stat(code)).isDirectory() ? 'dir' : 'image';
  } catch {
    throw new DriverStartError(`the program's code ${code} does not exist`);
  }
}
