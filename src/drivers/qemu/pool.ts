// Warm-pool VMs for the qemu driver (docs/warm-pool.md). A pooled VM boots the
// kernel and the base initramfs with `aleph.pool=1`, the configured runtime as its
// only drive, no NIC, and empty PCIe root ports; its init waits. A program is
// attached over QMP: a user-mode NIC (netdev_add + device_add, with this
// execution's port forward and guest API), then its code and volume drives
// (blockdev-add + device_add virtio-blk-pci), then a drive with serial "program"
// holding the per-program archive the init unpacks before booting on as usual.
// A pooled VM is q35 whatever `machine` says: microvm's virtio-mmio cannot hot-plug.

import { realpathSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { QemuPrewarmSettings } from '../../config/index.js';
import { shortHash, type Logger } from '../../common/index.js';
import { buildProgramArchive } from '../image/index.js';
import { isSquashfs, prepareDisks, STOP_TIMEOUT_S, VmProcess, vmLayout } from '../vm/index.js';
import { guestEnv, type UnixGuestLink } from '../guest-link.js';
import type { Program, VmLaunch } from '../../programs/index.js';
import { stopGrace } from '../stop-grace.js';
import { DriverStartError, type Endpoint, type ExitInfo, type Instance, type Slot, type WarmBooter, type WarmVm } from '../types.js';
import { commandLine, HOTPLUG_PORT, qemuArgs, USER_NET, type QemuAccel } from './args.js';
import { LOOPBACK_HOST, pickFreePort, withFields } from '../host/index.js';
import { QmpClient, qmpCommand } from './qmp.js';

/** Root ports of a pooled VM: the NIC, the program drive, and up to 6 code and volume drives. */
export const HOTPLUG_PORTS = 8;
/** What the init prints once it waits for a program (guest/init/init.sh). */
export const GUEST_WAITING_MARKER = 'aleph-guest: waiting for a program';
/** A pooled VM must reach that line within this (TCG on a loaded machine boots slowly). */
const WARM_BOOT_WAIT_MS = 180_000;
/** An attached program's init must say it starts the program within this. */
const ATTACH_WAIT_MS = 60_000;

export interface WarmContext {
  binary: string;
  kernel: string;
  initramfs: string;
  runDir: string;
  stopGraceMs: number;
  shape: QemuPrewarmSettings;
  accel(): Promise<QemuAccel>;
  log: Logger;
  console: Logger;
}

/** What attaching needs from the driver: the guest API under user-mode networking. */
export interface AttachContext {
  guestApi(socket: string, path: string): Promise<{ link: UnixGuestLink; command: string[] }>;
  /** The console line the init prints when it starts the program. */
  startedMarker: string;
  /** 'dir', 'image' or 'none' (index.ts codeKind). */
  codeKind(code: string): Promise<'dir' | 'image' | 'none'>;
  log: Logger;
}

export class QemuWarmBooter implements WarmBooter {
  readonly memoryMib: number;
  private sequence = 0;

  constructor(private readonly ctx: WarmContext) {
    this.memoryMib = ctx.shape.memoryMib;
  }

  async boot(signal: AbortSignal): Promise<WarmVm> {
    const { ctx } = this;
    const { runtime, memoryMib, vcpus, preload } = ctx.shape;
    if (signal.aborted) throw signal.reason;
    if (runtime && !(await isSquashfs(runtime))) throw new DriverStartError(`drivers.qemu.prewarm_runtime ${runtime} is not a squashfs image`);
    await mkdir(ctx.runDir, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(join(ctx.runDir, 'warm-'));
    const name = `warm-${++this.sequence}`;
    const log = withFields(ctx.log, { exec: name });
    const qmpSocket = join(dir, 'qmp.sock');
    const args = qemuArgs({
      machine: 'q35',
      accel: await ctx.accel(),
      memoryMib,
      vcpus,
      kernel: ctx.kernel,
      initrd: ctx.initramfs,
      kernelArgs: [
        'aleph.pool=1', `aleph.ip=${USER_NET.guest}`, `aleph.gw=${USER_NET.gateway}`, `aleph.dns=${USER_NET.dns}`,
        // A Python on the runtime imports these before any program (guest/aleph_preload).
        ...(runtime && preload.length > 0 ? [`aleph.preload=${preload.join(',')}`] : []),
      ],
      qmpSocket,
      net: { mode: 'none' },
      drives: runtime ? [{ id: 'runtime', path: runtime, readOnly: true }] : [],
      hotplugPorts: HOTPLUG_PORTS,
    });
    let warm: QemuWarmVm | undefined;
    let markWaiting!: () => void;
    const waiting = new Promise<void>((resolve) => (markWaiting = resolve));
    const vm = await VmProcess.spawn(ctx.binary, args, {
      // Not reachable before a program is attached (AttachedVm has the real endpoint).
      endpoint: { kind: 'tcp', host: LOOPBACK_HOST, port: 0 },
      stopGraceMs: stopGrace(ctx.stopGraceMs, STOP_TIMEOUT_S.asgi),
      log,
      console: withFields(ctx.console, { exec: name }),
      hooks: { graceful: qmpCommand(qmpSocket, 'system_powerdown'), forced: qmpCommand(qmpSocket, 'quit') },
      onConsole: (line) => {
        if (line.startsWith(GUEST_WAITING_MARKER)) markWaiting();
        warm?.consoleLine(line);
      },
      output: (stream, line) => warm?.output?.(stream, line),
      cleanups: [() => rm(dir, { recursive: true, force: true })],
    });
    const kill = () => void vm.kill();
    signal.addEventListener('abort', kill, { once: true });
    if (signal.aborted) kill(); // aborted while qemu was being spawned
    try {
      if (!(await vm.launchedWithin(waiting, WARM_BOOT_WAIT_MS))) throw new DriverStartError(`the warm VM did not wait for a program within ${WARM_BOOT_WAIT_MS} ms`);
      if (signal.aborted) throw signal.reason;
    } catch (error) {
      await vm.kill();
      throw error;
    } finally {
      signal.removeEventListener('abort', kill);
    }
    warm = new QemuWarmVm(vm, dir, qmpSocket, ctx.shape);
    log.info('warm vm waiting for a program', { pid: vm.pid, memory_mib: memoryMib });
    return warm;
  }
}

export class QemuWarmVm implements WarmVm {
  claimed = false;
  readonly memoryMib: number;
  readonly exited: Promise<ExitInfo>;
  /** The attached program's output (Slot.output), once claimed. */
  output: Slot['output'];
  private readonly runtime: string;
  private onStarted: (() => void) | undefined;
  private startedMarker = '';

  constructor(readonly vm: VmProcess, readonly dir: string, readonly qmpSocket: string, private readonly shape: QemuPrewarmSettings) {
    this.memoryMib = shape.memoryMib;
    this.exited = vm.exited;
    this.runtime = shape.runtime ? realpathOrSelf(shape.runtime) : '';
  }

  fits(program: Program): boolean {
    if (this.claimed || program.launch.kind !== 'vm') return false;
    const launch = program.launch;
    if (launch.kernel !== '' || launch.initramfs !== '') return false;
    if (program.memoryMib !== this.shape.memoryMib || program.vcpus !== this.shape.vcpus) return false;
    const runtime = launch.aleph?.runtime ?? '';
    if ((runtime ? realpathOrSelf(runtime) : '') !== this.runtime) return false;
    // The NIC and the program drive take a root port each, as do the code and every volume.
    return 2 + (launch.code ? 1 : 0) + (launch.aleph?.volumes.length ?? 0) <= HOTPLUG_PORTS;
  }

  /** No program inside: nothing to shut down gracefully. */
  stop(): Promise<void> {
    return this.vm.kill();
  }

  /** Resolves at the init's "starting" line, false when the VM exits first or `ms` pass. */
  startedWithin(marker: string, ms: number): Promise<boolean> {
    this.startedMarker = marker;
    return this.vm.launchedWithin(new Promise<void>((resolve) => (this.onStarted = resolve)), ms);
  }

  consoleLine(line: string): void {
    if (this.startedMarker && line.startsWith(this.startedMarker)) this.onStarted?.();
  }
}

/** The program's execution on a warm VM: the VM, reached at the port forward made for it. */
class AttachedVm implements Instance {
  readonly fromPool = true;
  readonly pid: number;
  readonly exited: Promise<ExitInfo>;
  guestApi?: Endpoint;

  constructor(private readonly vm: VmProcess, readonly endpoint: Endpoint) {
    this.pid = vm.pid;
    this.exited = vm.exited;
  }

  stop(): Promise<void> {
    return this.vm.stop();
  }
}

/**
 * Attaches the program to the warm VM and resolves once its init starts it (the
 * orchestrator then probes HTTP as after a boot). The VM is the program's from the
 * first step: on any failure it is killed, never returned to the pool.
 */
export async function attachProgram(warm: QemuWarmVm, program: Program, slot: Slot, ctx: AttachContext): Promise<Instance> {
  warm.claimed = true;
  warm.output = slot.output;
  const launch = program.launch as VmLaunch;
  const log = withFields(ctx.log, { hash: shortHash(program.hash), exec: slot.executionId });
  const { vm } = warm;
  const t0 = performance.now();
  try {
    const hostPort = await pickFreePort(LOOPBACK_HOST);
    const endpoint: Endpoint = { kind: 'tcp', host: LOOPBACK_HOST, port: hostPort };
    let link: UnixGuestLink | undefined;
    let guestApiCommand: string[] | undefined;
    if (slot.guestApi) {
      const forward = await ctx.guestApi(slot.guestApi.socket, join(warm.dir, 'guest-api.sock'));
      vm.onCleanup(() => forward.link.close());
      link = forward.link;
      guestApiCommand = forward.command;
    }
    const env = link ? { ...launch.env, ...guestEnv(`http://${USER_NET.guestApi}`, program.sender ?? '') } : launch.env;
    const layout = vmLayout({ hash: program.hash, launch: { ...launch, env }, code: await ctx.codeKind(launch.code), vmDir: warm.dir });
    vm.onCleanup(await prepareDisks(layout));
    const archive = await buildProgramArchive({ codeDir: layout.codeDir, files: layout.files }).catch((err: Error) => {
      throw new DriverStartError(`cannot pack the program's code: ${err.message}`);
    });
    // A block device is whole sectors: the archive padded with zeros (cpio stops at its trailer).
    const programImage = join(warm.dir, 'program.img');
    await writeFile(programImage, Buffer.concat([archive, Buffer.alloc((512 - (archive.length % 512)) % 512)]), { mode: 0o600 });

    const started = warm.startedWithin(ctx.startedMarker, ATTACH_WAIT_MS);
    const qmp = await QmpClient.connect(warm.qmpSocket);
    try {
      await qmp.execute('netdev_add', {
        type: 'user',
        id: 'n0',
        // As at boot (args.ts): no route out unless the program may use the internet.
        restrict: !launch.internet,
        hostfwd: [{ str: `tcp:${LOOPBACK_HOST}:${hostPort}-:8080` }],
        ...(guestApiCommand ? { guestfwd: [{ str: `tcp:${USER_NET.guestApi}:80-cmd:${commandLine(guestApiCommand)}` }] } : {}),
      });
      await qmp.execute('device_add', { driver: 'virtio-net-pci', netdev: 'n0', id: 'nic0', bus: `${HOTPLUG_PORT}0` });
      const drives = [
        ...layout.drives.filter((d) => d.role !== 'runtime').map((d) => ({ id: d.id, path: d.path, readOnly: d.readOnly })),
        { id: 'program', path: programImage, readOnly: true }, // last: the init starts once it sees it
      ];
      for (const [i, drive] of drives.entries()) {
        await qmp.execute('blockdev-add', {
          driver: 'raw',
          'node-name': drive.id,
          'read-only': drive.readOnly,
          file: { driver: 'file', filename: drive.path, 'read-only': drive.readOnly },
        });
        await qmp.execute('device_add', { driver: 'virtio-blk-pci', drive: drive.id, serial: drive.id, id: `blk_${drive.id}`, bus: `${HOTPLUG_PORT}${i + 1}` });
      }
    } finally {
      qmp.close();
    }
    const pluggedMs = Math.round(performance.now() - t0);
    if (!(await started)) throw new DriverStartError(`the warm VM did not start the program within ${ATTACH_WAIT_MS} ms`);
    const instance = new AttachedVm(vm, endpoint);
    if (link) instance.guestApi = { kind: 'unix', path: link.path };
    log.info('program attached to a warm vm', {
      pid: vm.pid, drives: layout.drives.length, endpoint: `${endpoint.host}:${endpoint.port}`,
      plugged_ms: pluggedMs, started_ms: Math.round(performance.now() - t0),
    });
    return instance;
  } catch (err) {
    await vm.kill();
    if (err instanceof DriverStartError) throw err;
    throw new DriverStartError(`qemu (warm vm): ${(err as Error).message}`, { cause: err });
  }
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
