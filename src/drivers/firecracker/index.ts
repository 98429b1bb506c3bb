// The `firecracker` driver (Firecracker 1.16): one VMM per execution, configured
// through its API socket (boot source, drives, machine config, one tap interface,
// optional vsock), then InstanceStart. In production it runs under the jailer
// (chroot, uid/gid, cgroup limits); without a jailer it runs directly
// (development, tests). The guest is reached at its pool address on :8080; its
// guest API (slot.guestApi) at the tap's host address (ALEPH_API_HOST).
//
// Boot layout: every VM boots kernel + our initramfs (the init). No drive is ever
// the root device (Firecracker's docs/initrd.md); drives are an ordered list passed
// through as given (vda, vdb, ... in that order), and the init decides what to
// mount where. Stop: SendCtrlAltDel on x86_64 (aarch64 has no i8042, its API
// refuses it), then SIGTERM/SIGKILL; the tap lease, per-VM files, the chroot and
// the cgroup are freed on exit. See docs/firecracker.md.

import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  createLogger,
  FIRECRACKER_BYTES_PER_DEVICE,
  FIRECRACKER_CMDLINE_MAX,
  FIRECRACKER_MAX_VCPUS,
  forbiddenBootArg,
  shortHash,
} from '../../common/index.js';
import type { Lease, NetworkPool } from '../net/index.js';
import type { Program } from '../../programs/index.js';
import {
  bootVm, checkExecutable, checkFile, findExecutable, IMAGE_HINT, setupError, STOP_TIMEOUT_S, tapNetwork, VmProcess, vmRunDir,
  type PreparedBoot, type SnapshotStore, type VmNetwork,
} from '../vm/index.js';
import { firecrackerSnapshotKey, restoreSnapshot, saveSnapshot } from './snapshots.js';
import { guestMac, startFirecrackerMachine } from './machine.js';
import { eraseMachine } from '../machine/index.js';
import { withFields } from '../host/index.js';
import { DriverStartError, type Driver, type Instance, type Slot } from '../types.js';
import { FirecrackerApi } from './api.js';
import { cgroup2Mount, chrootRoot, hostCgroupRoot, jailerArgs, JAILED_API_SOCKET, linkIntoJail, ownForJail, prepareChroot, removeJail, resolveExecFile, type JailSpec } from './jailer.js';
import { stopGrace } from '../stop-grace.js';

export type FirecrackerArch = 'x86_64' | 'aarch64';

export interface FirecrackerDriverOptions {
  stopGraceMs: number;
  binary: string; // firecracker
  jailer: string; // '' = no jailer
  kernel: string; // x86_64: ELF vmlinux or bzImage; aarch64: PE Image
  initramfs: string; // base initramfs (required: every VM boots it)
  /** The default runtime (a squashfs the init mounts as its root under an overlay); '' = none. Never the root device. */
  rootfs: string;
  runDir: string; // per-VM files when not jailed
  chrootBaseDir: string;
  /** The cgroup v2 hierarchy the jailer writes to; '' = the cgroup2 mount in /proc/mounts. */
  cgroupRoot: string;
  uid: number;
  gid: number;
  apiTimeoutMs: number;
  /** Appended to the kernel command line (checked by the config: no root=, init=, aleph.*). */
  extraBootArgs: string;
  pool: NetworkPool | undefined;
  /** Attach a vsock device (guest CID 3) with its socket next to the API socket (always, with snapshots). */
  vsock?: boolean;
  /** Save VMs once ready and restore them instead of booting (docs/snapshots.md); absent = always boot. */
  snapshots?: SnapshotStore;
  /** The host architecture Firecracker runs on; default: this process's. */
  arch?: FirecrackerArch;
}

/** One guest drive, in the order the guest sees them (vda, vdb, ...); never the root device. */
export interface DriveConfig {
  id: string; // Firecracker drive_id: letters, digits and '_'
  path: string; // on the host
  readOnly: boolean;
}

export function hostArch(): FirecrackerArch {
  return process.arch === 'arm64' ? 'aarch64' : 'x86_64';
}

/** Everything missing for the firecracker driver, one message per problem. */
export function checkFirecrackerOptions(options: FirecrackerDriverOptions): string[] {
  const problems: string[] = [];
  const arch = options.arch ?? hostArch();
  checkExecutable(problems, 'drivers.firecracker.binary', options.binary, ' (https://github.com/firecracker-microvm/firecracker/releases)');
  if (options.jailer !== '') checkExecutable(problems, 'drivers.firecracker.jailer', options.jailer);
  const kernelProblems: string[] = [];
  checkFile(kernelProblems, 'drivers.firecracker.kernel', options.kernel, IMAGE_HINT.replace('--out DIR', '--out DIR --vmlinux'));
  problems.push(...kernelProblems);
  if (kernelProblems.length === 0) {
    const format = kernelFormatProblem(options.kernel, arch);
    if (format) problems.push(`drivers.firecracker.kernel: ${format}`);
  }
  checkFile(problems, 'drivers.firecracker.initramfs', options.initramfs, `; every Firecracker VM boots kernel + initramfs${IMAGE_HINT}`);
  if (!options.pool) problems.push('the firecracker driver needs tap networking: a [drivers.network] pool');
  else checkExecutable(problems, 'tap networking', 'nft', ' (apt install nftables; docs/networking.md)');
  if (options.jailer === '' && options.runDir === '') problems.push('drivers.firecracker.run_dir is not set');
  if (options.jailer !== '') {
    if (options.uid === 0 || options.gid === 0) problems.push('drivers.firecracker.uid and gid: set an unprivileged uid:gid for the jail (0 runs Firecracker as root)');
    if (options.cgroupRoot === '' && !cgroup2Mount(readText('/proc/mounts'))) problems.push('the jailer needs a cgroup v2 hierarchy (no cgroup2 mount in /proc/mounts; set drivers.firecracker.cgroup_root)');
    const nodeUid = process.getuid?.() ?? 0;
    const privilege = jailerPrivilegeProblem(nodeUid);
    if (privilege) problems.push(privilege);
    const access = socketAccessProblem(options.uid, nodeUid, readText('/proc/self/status'));
    if (access) problems.push(access);
  }
  return problems;
}

/**
 * The jailer must start as root: its switch from uid 0 to the jail uid clears every
 * capability. Started by another uid with ambient capabilities (the systemd way to
 * give a service some), it would keep them across that switch and hand them to
 * Firecracker. Exported for tests.
 */
export function jailerPrivilegeProblem(nodeUid: number): string | undefined {
  if (nodeUid === 0) return undefined;
  return `the jailer must start as root (this node runs as uid ${nodeUid}; a non-root jailer would pass its capabilities on to Firecracker): run the service with systemd/drop-ins/firecracker-jailer.conf`;
}

/**
 * The jailer makes the jail's / and /run mode 0700, owned by the jail uid, so the
 * node reaches the API socket inside (and removes the chroot) only with
 * CAP_DAC_OVERRIDE, which root has unless the bounding set drops it. Exported for tests.
 */
export function socketAccessProblem(jailUid: number, nodeUid: number, procStatus: string): string | undefined {
  if (nodeUid === jailUid) return undefined;
  const effective = /^CapEff:\s*([0-9a-f]+)/m.exec(procStatus)?.[1];
  if (effective === undefined) return undefined; // no /proc: cannot tell
  const CAP_DAC_OVERRIDE = 1n;
  if ((BigInt(`0x${effective}`) >> CAP_DAC_OVERRIDE) & 1n) return undefined;
  return `the node (uid ${nodeUid}) cannot reach the API socket in a jail owned by uid ${jailUid} (mode 0700) without CAP_DAC_OVERRIDE (systemd/drop-ins/firecracker-jailer.conf grants it)`;
}

/**
 * x86_64 boots an ELF vmlinux or a bzImage; aarch64 a PE `Image` (arm64 magic at
 * 0x38). Returns what is wrong, or undefined. Exported for tests.
 */
export function kernelFormatProblem(path: string, arch: FirecrackerArch): string | undefined {
  const head = Buffer.alloc(0x240);
  let read = 0;
  try {
    const fd = openSync(path, 'r');
    try {
      read = readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    return `${path}: ${(err as Error).message}`;
  }
  const elf = read >= 4 && head.readUInt32BE(0) === 0x7f454c46;
  const bzImage = read >= 0x206 && head.toString('latin1', 0x202, 0x206) === 'HdrS';
  const armImage = read >= 0x3c && head.toString('latin1', 0x38, 0x3c) === 'ARM\x64';
  if (arch === 'x86_64' && !elf && !bzImage) return `${path} is neither an ELF vmlinux nor a bzImage (what Firecracker boots on x86_64)`;
  if (arch === 'aarch64' && !armImage) return `${path} is not an arm64 PE Image (Firecracker on aarch64 boots arch/arm64/boot/Image, not an ELF vmlinux)`;
  return undefined;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The request bodies, in order, that configure one VM (exported for tests). */
export interface FirecrackerConfig {
  bootSource: { kernel_image_path: string; boot_args: string; initrd_path: string };
  drives: Array<{ drive_id: string; path_on_host: string; is_root_device: false; is_read_only: boolean }>;
  machine: { vcpu_count: number; mem_size_mib: number; smt: boolean };
  network: { iface_id: string; host_dev_name: string; guest_mac: string };
  vsock?: { guest_cid: number; uds_path: string };
}

/** The VM's tap and the id its Firecracker (and jail) takes. */
interface FirecrackerNetwork extends VmNetwork {
  lease: Lease;
  id: string;
}

/** Where Firecracker finds what it boots, as it sees the paths (inside the jail when jailed). */
interface FirecrackerPaths {
  kernel: string;
  initrd: string;
  drives: DriveConfig[];
  api: string;
  vsock: string;
  apiOnHost: string;
}

function plainPaths(boot: PreparedBoot<FirecrackerNetwork>, kernel: string): FirecrackerPaths {
  const drives = boot.layout.drives.map((d) => ({ id: d.id, path: d.path, readOnly: d.readOnly }));
  return { kernel, initrd: boot.initrd, drives, api: join(boot.dir, 'api.sock'), vsock: join(boot.dir, 'vsock.sock'), apiOnHost: join(boot.dir, 'api.sock') };
}

export class FirecrackerDriver implements Driver {
  readonly name = 'firecracker';
  private readonly log = createLogger('driver.firecracker');
  private readonly console = createLogger('vm');
  private readonly firecrackerPath: string;
  private readonly arch: FirecrackerArch;
  private cgroupRoot: Promise<string> | undefined;

  constructor(private readonly options: FirecrackerDriverOptions) {
    const problems = checkFirecrackerOptions(options);
    if (problems.length > 0) throw setupError('firecracker', problems);
    this.firecrackerPath = findExecutable(options.binary)!;
    this.arch = options.arch ?? hostArch();
    if (this.arch === 'aarch64') this.log.info('aarch64: no SendCtrlAltDel, VMs are stopped with SIGTERM then SIGKILL');
  }

  async start(program: Program, slot: Slot): Promise<Instance> {
    checkResources(program);
    const hash = shortHash(program.hash);
    const log = withFields(this.log, { hash, exec: slot.executionId });
    const jailed = this.options.jailer !== '';
    if (program.launch.kind === 'machine') {
      // Not yet under the jailer: the writable disk would have to be linked into the chroot and owned by the jail uid.
      if (jailed) throw new DriverStartError('firecracker: instances (INSTANCE messages) do not run under the jailer yet; use the qemu driver or drivers.firecracker.jailer = ""');
      return startFirecrackerMachine({
        firecracker: this.firecrackerPath, kernel: this.options.kernel, runDir: this.options.runDir, arch: this.arch, apiTimeoutMs: this.options.apiTimeoutMs,
        stopGraceMs: this.options.stopGraceMs, extraBootArgs: this.options.extraBootArgs, pool: this.options.pool!, log, console: withFields(this.console, { hash }),
      }, program, program.launch, slot);
    }
    let jail: JailSpec | undefined;
    let api!: FirecrackerApi;
    let config!: FirecrackerConfig;
    return bootVm<FirecrackerNetwork>(program, slot, {
      driver: 'firecracker',
      log,
      initramfs: this.options.initramfs,
      // The one boot layout (src/drivers/vm/layout.ts): kernel + our initramfs, an ordered
      // drive list passed through as it is (none the root device), told to the init in the initramfs.
      defaultRuntime: this.options.rootfs,
      network: async (launch, cleanups) => {
        const tap = await tapNetwork(this.options.pool!, program, launch, slot, cleanups, jailed ? { uid: this.options.uid, gid: this.options.gid } : undefined);
        // The id follows the pool slot: a chroot left by a crashed VM in this slot is removed before reuse.
        return { ...tap, id: `aleph-${tap.lease.slot}` };
      },
      directory: async (net, cleanups) => {
        if (!jailed) return vmRunDir(this.options.runDir, slot.executionId, cleanups);
        jail = await this.jailSpec(net.id, program);
        cleanups.push(() => removeJail(jail!));
        await prepareChroot(jail);
        return chrootRoot(jail);
      },
      launch: async (boot) => {
        const kernel = boot.launch.kernel || this.options.kernel;
        if (boot.launch.kernel) {
          const format = kernelFormatProblem(boot.launch.kernel, this.arch);
          if (format) throw new DriverStartError(format);
        }
        const paths = jail ? await this.jailPaths(jail, boot, kernel) : plainPaths(boot, kernel);
        const { lease } = boot.net;
        config = firecrackerConfig({
          kernel: paths.kernel,
          initrd: paths.initrd,
          drives: paths.drives,
          extraBootArgs: this.options.extraBootArgs,
          arch: this.arch,
          vcpus: program.vcpus,
          memoryMib: program.memoryMib,
          tap: lease.tap,
          slot: lease.slot,
          guestIp: `${lease.guestIp}/${lease.prefix}`,
          gateway: lease.hostIp,
          ...(lease.ipv6 ? { ipv6: { address: `${lease.ipv6.address}/${lease.ipv6.prefix}`, gateway: lease.ipv6.gateway } } : {}),
          vsock: this.options.vsock || this.options.snapshots ? paths.vsock : undefined,
        });
        api = new FirecrackerApi(paths.apiOnHost, this.options.apiTimeoutMs);
        const spawnVm = () => VmProcess.spawn(jail ? this.options.jailer : this.firecrackerPath, jail ? jailerArgs(jail) : ['--api-sock', paths.api, '--id', boot.net.id], {
          endpoint: boot.net.endpoint,
          output: slot.output,
          // The guest init's own stop-timeout for this program (13 s for ASGI) fits in the grace.
          stopGraceMs: stopGrace(this.options.stopGraceMs, STOP_TIMEOUT_S[boot.launch.aleph?.interface ?? 'binary']),
          log,
          console: withFields(this.console, { hash }),
          // aarch64 has no i8042 (the API answers 400): SIGTERM, then SIGKILL after stop_grace.
          hooks: this.arch === 'x86_64' ? { graceful: async () => void (await api.put('/actions', { action_type: 'SendCtrlAltDel' })) } : {},
        });
        const snapshot = await this.snapshotOf(boot, config, kernel, !!jail);
        const saved = snapshot ? await snapshot.store.find(snapshot.key) : undefined;
        if (snapshot && saved) {
          const vm = await spawnVm();
          if (await restoreSnapshot(vm, api, saved, boot.net.lease, config.vsock!.uds_path, log)) {
            vm.restored = true;
            return vm;
          }
          await vm.kill();
          await snapshot.store.remove(snapshot.key);
          // A fresh process for the boot: the sockets of the one that failed go first.
          await Promise.all([rm(paths.apiOnHost, { force: true }), rm(config.vsock!.uds_path, { force: true })]);
        }
        const vm = await spawnVm();
        if (snapshot) vm.ready = () => void saveSnapshot(snapshot.store, snapshot.key, `firecracker ${program.hash}`, api, config.vsock!.uds_path, log);
        return vm;
      },
      started: async (vm, boot) => {
        if (vm.restored) {
          log.info('vm restored', { pid: vm.pid, id: boot.net.id, tap: boot.net.lease.tap, endpoint: `${boot.net.lease.guestIp}:8080` });
          return;
        }
        await api.waitReady(vm.exited);
        await api.put('/boot-source', config.bootSource);
        for (const drive of config.drives) await api.put(`/drives/${drive.drive_id}`, drive);
        await api.put('/machine-config', config.machine);
        await api.put(`/network-interfaces/${config.network.iface_id}`, config.network);
        if (config.vsock) await api.put('/vsock', config.vsock);
        await api.put('/actions', { action_type: 'InstanceStart' });
        log.info('vm started', { pid: vm.pid, jailed, id: boot.net.id, tap: boot.net.lease.tap, endpoint: `${boot.net.lease.guestIp}:8080`, memory_mib: program.memoryMib, vcpus: program.vcpus });
      },
    });
  }

  /** Erases an instance's disk and state (the owner's erase); it must not be running. */
  async erase(program: Program): Promise<boolean> {
    if (program.launch.kind !== 'machine') return false;
    return eraseMachine(program.launch);
  }

  /**
   * The snapshot this VM may be saved as and restored from, or undefined where a saved
   * state could go stale: writable drives (seen through another life's page cache), the
   * guest API (its address is per life and frozen in the guest's environment) and the
   * jail (the state and memory files would have to cross into the chroot) always boot.
   */
  private async snapshotOf(boot: PreparedBoot<FirecrackerNetwork>, config: FirecrackerConfig, kernel: string, jailed: boolean): Promise<{ store: SnapshotStore; key: string } | undefined> {
    const store = this.options.snapshots;
    if (!store || jailed || boot.net.guestApi || !boot.layout.drives.every((d) => d.readOnly)) return undefined;
    const key = await firecrackerSnapshotKey({
      firecracker: this.firecrackerPath,
      kernel,
      baseInitramfs: boot.baseInitramfs,
      archiveSha256: createHash('sha256').update(boot.archive).digest('hex'),
      drives: boot.layout.drives,
      vcpus: config.machine.vcpu_count,
      memoryMib: config.machine.mem_size_mib,
      arch: this.arch,
      bootArgs: config.bootSource.boot_args,
    });
    return { store, key };
  }

  /**
   * Paths as the jailed Firecracker sees them (inside its chroot). Drives made for this
   * boot live in the root already; the others, and the kernel, are hard-linked in.
   */
  private async jailPaths(jail: JailSpec, boot: PreparedBoot<FirecrackerNetwork>, kernel: string): Promise<FirecrackerPaths> {
    const root = boot.dir;
    const shared: Record<string, string> = { vmlinux: kernel };
    const writable = new Set<string>();
    for (const drive of boot.layout.drives) {
      if (dirname(drive.path) === root) continue;
      shared[`${drive.id}.img`] = drive.path;
      if (!drive.readOnly) writable.add(`${drive.id}.img`);
    }
    const inside = await linkIntoJail(jail, shared, writable);
    const drives = boot.layout.drives.map((d) => ({ id: d.id, path: dirname(d.path) === root ? `/${basename(d.path)}` : inside[`${d.id}.img`]!, readOnly: d.readOnly }));
    // The jailed Firecracker opens read-write drives and the initrd as the jail uid.
    for (const drive of drives) if (!drive.readOnly) await ownForJail(jail, join(root, drive.path));
    await ownForJail(jail, boot.initrd);
    return { kernel: inside.vmlinux!, initrd: `/${basename(boot.initrd)}`, drives, api: JAILED_API_SOCKET, vsock: '/run/vsock.sock', apiOnHost: join(root, JAILED_API_SOCKET) };
  }

  private async jailSpec(id: string, program: Program): Promise<JailSpec> {
    this.cgroupRoot ??= this.options.cgroupRoot ? Promise.resolve(this.options.cgroupRoot) : hostCgroupRoot().then((root) => root ?? '/sys/fs/cgroup');
    return {
      jailer: this.options.jailer,
      // Resolved at each start: the jail directory is named after the real file (an upgrade may re-point a symlink).
      firecracker: await resolveExecFile(this.firecrackerPath),
      id,
      uid: this.options.uid,
      gid: this.options.gid,
      chrootBaseDir: this.options.chrootBaseDir,
      cgroupRoot: await this.cgroupRoot,
      memoryMib: program.memoryMib,
      vcpus: program.vcpus,
    };
  }
}

/** machine-config limits, for programs that did not go through the config checks (Aleph). */
function checkResources(program: Program): void {
  if (!Number.isInteger(program.vcpus) || program.vcpus < 1 || program.vcpus > FIRECRACKER_MAX_VCPUS) {
    throw new DriverStartError(`firecracker allows 1-${FIRECRACKER_MAX_VCPUS} vCPUs, the program asks for ${program.vcpus}`);
  }
  if (!Number.isInteger(program.memoryMib) || program.memoryMib < 1) throw new DriverStartError(`firecracker needs a memory size of at least 1 MiB, the program asks for ${program.memoryMib}`);
}

/** The kernel command line we send as boot_args (Firecracker then drops its defaults). */
export function firecrackerBootArgs(vm: { guestIp: string; gateway: string; ipv6?: { address: string; gateway: string }; extraBootArgs: string; arch: FirecrackerArch }): string {
  // No root= or init=: the initramfs is the root and its /init runs; Firecracker
  // appends virtio_mmio.device= entries itself (x86_64).
  const args = ['console=ttyS0', 'reboot=k', 'panic=1', 'pci=off', 'quiet'];
  // Firecracker's own defaults: skip probing what its i8042 does not have (boot time).
  if (vm.arch === 'x86_64') args.push('i8042.noaux', 'i8042.nomux', 'i8042.dumbkbd');
  // The drives are described to the init in /etc/aleph/mounts (the layout), not here.
  args.push(`aleph.ip=${vm.guestIp}`, `aleph.gw=${vm.gateway}`);
  if (vm.ipv6) args.push(`aleph.ip6=${vm.ipv6.address}`, `aleph.gw6=${vm.ipv6.gateway}`);
  const extra = vm.extraBootArgs.split(/\s+/).filter(Boolean);
  for (const arg of extra) {
    const why = forbiddenBootArg(arg);
    if (why) throw new DriverStartError(`drivers.firecracker.extra_boot_args: ${why}`);
  }
  return [...args, ...extra].join(' ');
}

export function firecrackerConfig(vm: {
  kernel: string;
  initrd: string;
  /** In guest order (vda, vdb, ...): Firecracker attaches drives in the order they are added. */
  drives: DriveConfig[];
  extraBootArgs: string;
  arch: FirecrackerArch;
  vcpus: number;
  memoryMib: number;
  tap: string;
  slot: number;
  guestIp: string; // addr/prefix
  ipv6?: { address: string; gateway: string }; // addr/124 and the gateway
  gateway: string;
  vsock?: string;
}): FirecrackerConfig {
  for (const drive of vm.drives) {
    if (!/^[A-Za-z0-9_]+$/.test(drive.id)) throw new DriverStartError(`drive id ${JSON.stringify(drive.id)}: Firecracker allows only letters, digits and '_'`);
  }
  if (new Set(vm.drives.map((d) => d.id)).size !== vm.drives.length) throw new DriverStartError('two drives share an id');
  const bootArgs = firecrackerBootArgs(vm);
  const devices = vm.drives.length + 1 + (vm.vsock ? 1 : 0);
  if (bootArgs.length + devices * FIRECRACKER_BYTES_PER_DEVICE > FIRECRACKER_CMDLINE_MAX) {
    throw new DriverStartError(`the kernel command line (${bootArgs.length} bytes and ${devices} devices) does not fit Firecracker's ${FIRECRACKER_CMDLINE_MAX + 1}-byte buffer`);
  }
  const config: FirecrackerConfig = {
    bootSource: { kernel_image_path: vm.kernel, initrd_path: vm.initrd, boot_args: bootArgs },
    drives: vm.drives.map((d) => ({ drive_id: d.id, path_on_host: d.path, is_root_device: false, is_read_only: d.readOnly })),
    machine: { vcpu_count: vm.vcpus, mem_size_mib: vm.memoryMib, smt: false },
    // A locally administered MAC derived from the slot, stable across reuse.
    network: { iface_id: 'eth0', host_dev_name: vm.tap, guest_mac: guestMac(vm.slot) },
  };
  if (vm.vsock) config.vsock = { guest_cid: 3, uds_path: vm.vsock };
  return config;
}

export { FirecrackerApi, FirecrackerApiError } from './api.js';
export { netCommand, snapshotLoadBody } from './snapshots.js';
export { ensureRawDisk, machineBootArgs, rawDiskOf } from './machine.js';
export { cgroup2Mount, cgroupDir, chrootDir, chrootRoot, jailerArgs, linkIntoJail, prepareChroot, removeJail, resolveExecFile, JAILED_API_SOCKET, type JailSpec } from './jailer.js';
