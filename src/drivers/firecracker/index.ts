// The `firecracker` driver: one Firecracker VMM per execution, configured through
// its API socket (boot source, drives, machine config, one tap interface, optional
// vsock), then InstanceStart. In production it runs under the jailer (chroot, uid/
// gid, cgroup limits); without a jailer it runs directly (development, tests).
// The guest is reached at its pool address on :8080. Stop: SendCtrlAltDel, then
// SIGTERM/SIGKILL; the tap lease, per-VM files and the chroot are freed on exit.

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createLogger, shortHash } from '../../common/index.js';
import { buildProgramArchive, writeConcatenated } from '../image/index.js';
import type { NetworkPool } from '../net/index.js';
import type { Program } from '../../programs/types.js';
import { prepareDisks, vmLayout, type VmLayout } from '../vm/index.js';
import { checkExecutable, checkFile, findExecutable, IMAGE_HINT, safeName, setupError, withFields } from '../qemu/checks.js';
import { codeKind, vmLaunchOf } from '../qemu/index.js';
import { VmProcess, type Cleanup } from '../qemu/vm-process.js';
import { DriverStartError, type Driver, type Endpoint, type Instance, type Slot } from '../types.js';
import { FirecrackerApi } from './api.js';
import { chrootRoot, jailerArgs, JAILED_API_SOCKET, ownForJail, prepareChroot, removeChroot, type JailSpec } from './jailer.js';

export interface FirecrackerDriverOptions {
  stopGraceMs: number;
  binary: string; // firecracker
  jailer: string; // '' = no jailer
  kernel: string; // uncompressed ELF vmlinux
  initramfs: string; // base initramfs, or ''
  rootfs: string; // read-only root drive, or ''
  runDir: string; // per-VM files when not jailed
  chrootBaseDir: string;
  uid: number;
  gid: number;
  apiTimeoutMs: number;
  pool: NetworkPool | undefined;
  /** Attach a vsock device (guest CID 3) with its socket next to the API socket. */
  vsock?: boolean;
}

/** Everything missing for the firecracker driver, one message per problem. */
export function checkFirecrackerOptions(options: FirecrackerDriverOptions): string[] {
  const problems: string[] = [];
  checkExecutable(problems, 'drivers.firecracker.binary', options.binary, ' (https://github.com/firecracker-microvm/firecracker/releases)');
  if (options.jailer !== '') checkExecutable(problems, 'drivers.firecracker.jailer', options.jailer);
  checkFile(problems, 'drivers.firecracker.kernel', options.kernel, IMAGE_HINT.replace('--out DIR', '--out DIR --vmlinux'));
  if (options.initramfs === '' && options.rootfs === '') problems.push('drivers.firecracker: set initramfs or rootfs (the guest needs a root filesystem)');
  if (options.initramfs !== '') checkFile(problems, 'drivers.firecracker.initramfs', options.initramfs, IMAGE_HINT);
  if (options.rootfs !== '') checkFile(problems, 'drivers.firecracker.rootfs', options.rootfs);
  if (!options.pool) problems.push('the firecracker driver needs tap networking: a [drivers.network] pool');
  if (options.jailer === '' && options.runDir === '') problems.push('drivers.firecracker.run_dir is not set');
  return problems;
}

/** The request bodies, in order, that configure one VM (exported for tests). */
export interface FirecrackerConfig {
  bootSource: { kernel_image_path: string; boot_args: string; initrd_path?: string };
  drives: Array<{ drive_id: string; path_on_host: string; is_root_device: boolean; is_read_only: boolean }>;
  machine: { vcpu_count: number; mem_size_mib: number; smt: boolean };
  network: { iface_id: string; host_dev_name: string; guest_mac: string };
  vsock?: { guest_cid: number; uds_path: string };
}

export class FirecrackerDriver implements Driver {
  readonly name = 'firecracker';
  private readonly log = createLogger('driver.firecracker');
  private readonly console = createLogger('vm');
  private readonly firecrackerPath: string;

  constructor(private readonly options: FirecrackerDriverOptions) {
    const problems = checkFirecrackerOptions(options);
    if (problems.length > 0) throw setupError('firecracker', problems);
    this.firecrackerPath = findExecutable(options.binary)!;
  }

  async start(program: Program, slot: Slot): Promise<Instance> {
    const launch = vmLaunchOf(program);
    const pool = this.options.pool!;
    const hash = shortHash(program.hash);
    const log = withFields(this.log, { hash, exec: slot.executionId });
    const cleanups: Cleanup[] = [];
    const undo = async () => {
      for (const step of cleanups.splice(0).reverse()) await Promise.resolve(step()).catch(() => {});
    };
    try {
      const lease = await pool.acquire(slot.executionId, { internet: launch.internet });
      cleanups.push(() => pool.release(lease));
      // The id follows the pool slot: a chroot left by a crashed VM in this slot is removed before reuse.
      const id = `aleph-${lease.slot}`;
      const code = await codeKind(launch.code);
      const baseInitramfs = launch.initramfs || this.options.initramfs;
      // The one boot layout (src/drivers/vm/layout.ts): kernel + our initramfs, no root
      // drive; drives.firecracker.rootfs is only a default runtime, mounted by the init.
      if (!baseInitramfs) throw new DriverStartError('the guest boots our initramfs: set drivers.firecracker.initramfs');
      const layoutFor = (vmDir: string) => vmLayout({ hash: program.hash, launch, code, vmDir, defaultRuntime: this.options.rootfs });

      let dir: string; // where per-VM files live, as the host sees it
      let paths: { kernel: string; initrd: string; drives: DriveConfig[]; api: string; vsock: string };
      let spawnFile: string;
      let spawnArgs: string[];
      const jail: JailSpec | undefined = this.options.jailer
        ? {
            jailer: this.options.jailer,
            firecracker: this.firecrackerPath,
            id,
            uid: this.options.uid,
            gid: this.options.gid,
            chrootBaseDir: this.options.chrootBaseDir,
            memoryMib: program.memoryMib,
            vcpus: program.vcpus,
          }
        : undefined;
      let layout: VmLayout;
      if (jail) {
        cleanups.push(() => removeChroot(jail));
        dir = chrootRoot(jail);
        layout = layoutFor(dir);
        const shared: Record<string, string> = { vmlinux: launch.kernel || this.options.kernel };
        for (const drive of layout.drives) if (dirname(drive.path) !== dir) shared[`${drive.id}.img`] = drive.path;
        const inside = await prepareChroot(jail, shared);
        cleanups.push(await prepareDisks(layout));
        const drives = layout.drives.map((d) => ({ id: d.id, path: dirname(d.path) === dir ? `/${basename(d.path)}` : inside[`${d.id}.img`]!, readOnly: d.readOnly }));
        for (const drive of drives) if (!drive.readOnly) await ownForJail(jail, join(dir, drive.path));
        paths = { kernel: inside.vmlinux!, initrd: '/initrd', drives, api: JAILED_API_SOCKET, vsock: '/run/vsock.sock' };
        await writeConcatenated(join(dir, 'initrd'), [baseInitramfs, await buildProgramArchive({ codeDir: layout.codeDir, files: layout.files })]);
        await ownForJail(jail, join(dir, 'initrd'));
        spawnFile = this.options.jailer;
        spawnArgs = jailerArgs(jail);
      } else {
        await mkdir(this.options.runDir, { recursive: true, mode: 0o700 });
        dir = await mkdtemp(join(this.options.runDir, `${safeName(slot.executionId)}-`));
        cleanups.push(() => rm(dir, { recursive: true, force: true }));
        layout = layoutFor(dir);
        cleanups.push(await prepareDisks(layout));
        paths = { kernel: launch.kernel || this.options.kernel, initrd: join(dir, 'initrd'), drives: layout.drives.map((d) => ({ id: d.id, path: d.path, readOnly: d.readOnly })), api: join(dir, 'api.sock'), vsock: join(dir, 'vsock.sock') };
        await writeConcatenated(paths.initrd, [baseInitramfs, await buildProgramArchive({ codeDir: layout.codeDir, files: layout.files })]);
        spawnFile = this.firecrackerPath;
        spawnArgs = ['--api-sock', paths.api, '--id', id];
      }
      const apiSocketOnHost = jail ? join(dir, paths.api) : paths.api;

      const config = firecrackerConfig({
        kernel: paths.kernel,
        initrd: paths.initrd,
        drives: paths.drives,
        vcpus: program.vcpus,
        memoryMib: program.memoryMib,
        tap: lease.tap,
        slot: lease.slot,
        guestIp: `${lease.guestIp}/${lease.prefix}`,
        gateway: lease.hostIp,
        vsock: this.options.vsock ? paths.vsock : undefined,
      });

      const endpoint: Endpoint = { kind: 'tcp', host: lease.guestIp, port: 8080 };
      const api = new FirecrackerApi(apiSocketOnHost, this.options.apiTimeoutMs);
      const vm = await VmProcess.spawn(spawnFile, spawnArgs, {
        endpoint,
        stopGraceMs: this.options.stopGraceMs,
        log,
        console: withFields(this.console, { hash }),
        hooks: { graceful: async () => void (await api.put('/actions', { action_type: 'SendCtrlAltDel' })) },
        cleanups: cleanups.splice(0),
      });
      try {
        await api.waitReady(vm.exited);
        await api.put('/boot-source', config.bootSource);
        for (const drive of config.drives) await api.put(`/drives/${drive.drive_id}`, drive);
        await api.put('/machine-config', config.machine);
        await api.put(`/network-interfaces/${config.network.iface_id}`, config.network);
        if (config.vsock) await api.put('/vsock', config.vsock);
        await api.put('/actions', { action_type: 'InstanceStart' });
      } catch (err) {
        await vm.stop();
        throw new DriverStartError(`firecracker: ${(err as Error).message}`);
      }
      log.info('vm started', { pid: vm.pid, jailed: Boolean(jail), id, tap: lease.tap, endpoint: `${lease.guestIp}:8080`, memory_mib: program.memoryMib, vcpus: program.vcpus });
      return vm;
    } catch (err) {
      await undo();
      if (err instanceof DriverStartError) throw err;
      throw new DriverStartError(`firecracker: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** A drive as src/drivers/vm/layout.ts orders them (paths as Firecracker sees them). */
export interface DriveConfig {
  id: string;
  path: string;
  readOnly: boolean;
}

export function firecrackerConfig(vm: {
  kernel: string;
  initrd?: string;
  /** In guest order (vda, vdb, ...): Firecracker attaches drives in the order they are added. */
  drives: DriveConfig[];
  vcpus: number;
  memoryMib: number;
  tap: string;
  slot: number;
  guestIp: string; // addr/prefix
  gateway: string;
  vsock?: string;
}): FirecrackerConfig {
  // No drive is the root device: the kernel boots our initramfs (Firecracker docs/initrd.md),
  // so Firecracker adds no root= of its own; the init learns its drives from /etc/aleph/mounts.
  const drives: FirecrackerConfig['drives'] = vm.drives.map((d) => ({ drive_id: d.id, path_on_host: d.path, is_root_device: false, is_read_only: d.readOnly }));
  const bootArgs = ['console=ttyS0', 'reboot=k', 'panic=1', 'pci=off', 'quiet', `aleph.ip=${vm.guestIp}`, `aleph.gw=${vm.gateway}`];
  const bootSource: FirecrackerConfig['bootSource'] = { kernel_image_path: vm.kernel, boot_args: bootArgs.join(' ') };
  if (vm.initrd) bootSource.initrd_path = vm.initrd;
  const config: FirecrackerConfig = {
    bootSource,
    drives,
    machine: { vcpu_count: vm.vcpus, mem_size_mib: vm.memoryMib, smt: false },
    // A locally administered MAC derived from the slot, stable across reuse.
    network: { iface_id: 'eth0', host_dev_name: vm.tap, guest_mac: `06:00:ac:10:${((vm.slot >> 8) & 255).toString(16).padStart(2, '0')}:${(vm.slot & 255).toString(16).padStart(2, '0')}` },
  };
  if (vm.vsock) config.vsock = { guest_cid: 3, uds_path: vm.vsock };
  return config;
}

export { FirecrackerApi, FirecrackerApiError } from './api.js';
export { chrootDir, chrootRoot, jailerArgs, prepareChroot, removeChroot, JAILED_API_SOCKET, type JailSpec } from './jailer.js';
