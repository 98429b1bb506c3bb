// The `qemu` driver: one qemu-system-x86_64 per execution, booting a kernel with
// the base initramfs plus a per-program archive (its code, entrypoint and
// environment). `-M microvm` with virtio-mmio devices (or q35 with virtio-pci);
// KVM when /dev/kvm is usable, TCG otherwise. Networking is user-mode with a
// loopback port forwarded to the guest's :8080 (unprivileged), or a tap device per
// VM from the address pool (root). The execution's guest API (slot.guestApi) is
// reached at the tap's host address, or at 10.0.2.100:80 through a guestfwd under
// user-mode networking (docs/guest-api.md). Stop: ACPI power button over QMP, then QMP
// quit, then SIGKILL; the per-VM directory and the tap lease are freed on exit.

import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, shortHash, type Logger } from '../../common/index.js';
import { kvmUsable } from '../image/index.js';
import {
  bootVm, checkExecutable, checkFile, codeKind, controlGuest, fileIdentity, findExecutable, IMAGE_HINT, NODE_VERSION, restoreCommands, setupError, snapshotKey, STOP_TIMEOUT_S, tapNetwork, vmLaunchOf, VmProcess, vmRunDir,
  type Cleanup, type PreparedBoot, type SnapshotStore, type VmNetwork,
} from '../vm/index.js';
import { guestNetworkArgs, type NetworkPool } from '../net/index.js';
import { LOOPBACK_HOST, pickFreePort, withFields } from '../host/index.js';
import type { Program, VmLaunch } from '../../programs/index.js';
import type { QemuPrewarmSettings } from '../../config/index.js';
import { DriverStartError, formatEndpoint, type Driver, type Instance, type Slot } from '../types.js';
import { plainPath, qemuArgs, USER_NET, type QemuAccel, type QemuMachine, type QemuVmSpec } from './args.js';
import { openUnixGuestLink, type UnixGuestLink, GUEST_LINK_LOOPBACK } from '../guest-link.js';
import { openOutbound, outboundTools } from '../outbound.js';
import { QmpClient, qmpCommand } from './qmp.js';
import { startMachine } from './machine.js';
import { attachProgram, QemuWarmBooter, QemuWarmVm } from './pool.js';
import { eraseMachine } from '../machine/index.js';
import { stopGrace } from '../stop-grace.js';

/** A VM's network as qemu sets it up: its -netdev and the guest's kernel arguments. */
interface QemuNetwork extends VmNetwork {
  net: QemuVmSpec['net'];
  kernelArgs: string[];
  /** The VM's directory: made with the network, which puts the guest API's socket in it. */
  dir: string;
  /** How qemu is started: directly, or through nsenter into its own network namespace. */
  vmm: { file: string; prefix: string[] };
}

export interface QemuDriverOptions {
  stopGraceMs: number;
  binary: string; // qemu-system-x86_64 (a name is looked up in PATH)
  kernel: string; // bzImage
  initramfs: string; // base initramfs from the image builder
  machine: 'auto' | QemuMachine; // auto: microvm with KVM, q35 with TCG
  accel: 'auto' | QemuAccel;
  network: 'user' | 'tap';
  /** Per-VM directories (initrd, QMP socket) are made here and removed on stop. */
  runDir: string;
  /** Required when network = 'tap'. */
  pool?: NetworkPool;
  /** Save VMs once ready and restore them instead of booting (docs/snapshots.md); absent = always boot. */
  snapshots?: SnapshotStore;
  /** The shape of warm-pool VMs ([orchestrator] prewarm, docs/warm-pool.md); absent = no pool. */
  prewarm?: QemuPrewarmSettings;
}

export const QEMU_DEFAULTS = {
  binary: 'qemu-system-x86_64',
  machine: 'auto' as const,
  accel: 'auto' as const,
  network: 'user' as const,
};

/** Everything missing for the qemu driver, one message per problem (empty when ready). */
export function checkQemuOptions(options: QemuDriverOptions): string[] {
  const problems: string[] = [];
  checkExecutable(problems, 'drivers.qemu.binary', options.binary, ' (install qemu-system-x86)');
  // Neither set: a node for instances only (they boot their own kernel); programs are refused at start.
  if (!instancesOnly(options)) {
    checkFile(problems, 'drivers.qemu.kernel', options.kernel, IMAGE_HINT);
    checkFile(problems, 'drivers.qemu.initramfs', options.initramfs, IMAGE_HINT);
  }
  if (options.runDir === '') problems.push('drivers.qemu.run_dir is not set');
  if (options.network === 'tap' && !options.pool) problems.push('drivers.qemu.network = "tap" needs a [drivers.network] pool');
  if (options.network === 'tap') checkExecutable(problems, 'drivers.qemu.network = "tap"', 'nft', ' (apt install nftables; docs/networking.md)');
  return problems;
}

/** No program kernel or initramfs configured: only instances (INSTANCE messages) run. */
export function instancesOnly(options: Pick<QemuDriverOptions, 'kernel' | 'initramfs'>): boolean {
  return options.kernel === '' && options.initramfs === '';
}

/** How long a restore may take to load and to hear from the guest agent. */
const RESTORE_WAIT_MS = 20_000;

/** Polls QMP until the VM runs (a restore has loaded); rejects when it does not within `ms`. */
async function waitRunning(qmpSocket: string, ms: number): Promise<true> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const client = await QmpClient.connect(qmpSocket).catch(() => undefined);
    if (client) {
      try {
        const status = (await client.execute('query-status')) as { status?: string };
        if (status.status === 'running') return true;
      } catch {
        // not yet
      } finally {
        client.close();
      }
    }
    await sleep(50);
  }
  throw new Error(`the saved state did not load within ${ms} ms`);
}

/** What the guest init prints when it starts the program (see image/guest-init.ts). */
export const GUEST_STARTED_MARKER = 'aleph-guest: starting ';
/** start() waits at most this long for that line before leaving it to the HTTP probe. */
const LAUNCH_WAIT_MS = 30_000;

export class QemuDriver implements Driver {
  readonly name = 'qemu';
  private readonly log = createLogger('driver.qemu');
  private readonly console = createLogger('vm');
  private accel: Promise<QemuAccel> | undefined;
  private warnedMicrovmTcg = false;
  /** Warm-pool VMs: under user-mode networking only (a tap lease is per program, by its hash). */
  readonly prewarm?: QemuWarmBooter;

  constructor(private readonly options: QemuDriverOptions) {
    const problems = checkQemuOptions(options);
    if (problems.length > 0) throw setupError('qemu', problems);
    if (options.prewarm && options.network === 'user') {
      this.prewarm = new QemuWarmBooter({
        ...options, shape: options.prewarm, accel: () => this.resolveAccel(), log: this.log, console: this.console,
      });
    }
    if (instancesOnly(options)) this.log.info('no drivers.qemu.kernel and initramfs: this node runs instances only');
  }

  /** The accelerator in use: KVM when usable (or required), TCG otherwise. */
  resolveAccel(): Promise<QemuAccel> {
    this.accel ??= (async () => {
      if (this.options.accel !== 'auto') return this.options.accel;
      return (await kvmUsable()) ? 'kvm' : 'tcg';
    })();
    return this.accel;
  }

  async start(program: Program, slot: Slot): Promise<Instance> {
    await mkdir(this.options.runDir, { recursive: true, mode: 0o700 });
    if (program.launch.kind === 'machine') {
      const hash = shortHash(program.hash);
      return startMachine({
        binary: this.options.binary, runDir: this.options.runDir, accel: await this.resolveAccel(), stopGraceMs: this.options.stopGraceMs,
        pool: this.options.network === 'tap' ? this.options.pool : undefined,
        log: withFields(this.log, { hash, exec: slot.executionId }), console: withFields(this.console, { hash }),
      }, program, program.launch, slot);
    }
    const launch = vmLaunchOf(program);
    if (instancesOnly(this.options) && !(launch.kernel && launch.initramfs)) {
      throw new DriverStartError('this node runs instances only: programs need drivers.qemu.kernel and drivers.qemu.initramfs');
    }
    // A warm VM, unless a saved state of this program may be restored (faster still). Not for
    // a program with internet: a warm qemu runs outside the namespace that keeps such a
    // guest off the host's loopback (userNetOutbound), so that program boots.
    if (slot.warm instanceof QemuWarmVm && !launch.internet && slot.warm.fits(program) && !(await this.options.snapshots?.hasLabel(snapshotLabel(program)))) {
      return attachProgram(slot.warm, program, slot, {
        guestApi: (socket, path) => this.userNetGuestApi(socket, path), startedMarker: GUEST_STARTED_MARKER, codeKind, log: this.log,
      });
    }
    const hash = shortHash(program.hash);
    const log = withFields(this.log, { hash, exec: slot.executionId });
    let markSeen!: () => void;
    const seen = new Promise<void>((resolve) => (markSeen = resolve));
    let vmSpec!: QemuVmSpec;
    return bootVm<QemuNetwork>(program, slot, {
      driver: 'qemu',
      log,
      initramfs: this.options.initramfs,
      network: (launch, cleanups) => this.network(program, launch, slot, cleanups),
      directory: (net) => Promise.resolve(net.dir),
      launch: async (boot) => {
        vmSpec = await this.spec(boot);
        return this.launchVm(boot, vmSpec, (line) => {
          if (line.startsWith(GUEST_STARTED_MARKER)) markSeen();
        });
      },
      started: async (vm) => {
        // Launched = the guest's init started the program. Probing HTTP before that is
        // wasted: qemu's port forward accepts connections that then hang while the guest
        // boots. Readiness itself stays HTTP-level (the orchestrator's probe).
        if (!vm.restored && !(await vm.launchedWithin(seen, LAUNCH_WAIT_MS))) log.info('no launch line from the guest yet');
        log.info(vm.restored ? 'vm restored' : 'vm started', { pid: vm.pid, accel: vmSpec.accel, machine: vmSpec.machine, memory_mib: program.memoryMib, vcpus: program.vcpus, drives: vmSpec.drives?.length ?? 0, endpoint: formatEndpoint(vm.endpoint) });
      },
    });
  }

  /** A tap from the pool, or user-mode networking with a loopback port forwarded to the guest's :8080. */
  private async network(program: Program, launch: VmLaunch, slot: Slot, cleanups: Cleanup[]): Promise<QemuNetwork> {
    const dir = await vmRunDir(this.options.runDir, slot.executionId, cleanups);
    if (this.options.network === 'tap') {
      const tap = await tapNetwork(this.options.pool!, program, launch, slot, cleanups);
      return { ...tap, dir, vmm: { file: this.options.binary, prefix: [] }, net: { mode: 'tap', tap: tap.lease.tap }, kernelArgs: guestNetworkArgs(tap.lease) };
    }
    const hostPort = await pickFreePort(LOOPBACK_HOST);
    const qemuNet: QemuNetwork['net'] = { mode: 'user', hostPort, internet: launch.internet };
    const net: QemuNetwork = {
      endpoint: { kind: 'tcp', host: LOOPBACK_HOST, port: hostPort },
      apiHost: '',
      dir,
      vmm: launch.internet ? await this.userNetOutbound(hostPort, dir, cleanups, this.log) : { file: this.options.binary, prefix: [] },
      net: qemuNet,
      kernelArgs: [`aleph.ip=${USER_NET.guest}`, `aleph.gw=${USER_NET.gateway}`, `aleph.dns=${USER_NET.dns}`],
    };
    if (slot.guestApi) {
      const forward = await this.userNetGuestApi(slot.guestApi.socket, join(dir, 'guest-api.sock'));
      cleanups.push(() => forward.link.close()); // before the directory goes (cleanups run in reverse)
      net.guestApi = { kind: 'unix', path: forward.link.path };
      qemuNet.guestApiCommand = forward.command;
      net.apiHost = `http://${USER_NET.guestApi}`;
    }
    return net;
  }

  private async spec(boot: PreparedBoot<QemuNetwork>): Promise<QemuVmSpec> {
    const accel = await this.resolveAccel();
    // microvm needs a paravirtual clock: under TCG it has no reliable timer to calibrate the TSC against.
    const machine: QemuMachine = this.options.machine === 'auto' ? (accel === 'kvm' ? 'microvm' : 'q35') : this.options.machine;
    if (machine === 'microvm' && accel === 'tcg' && !this.warnedMicrovmTcg) {
      this.warnedMicrovmTcg = true;
      this.log.warn('machine = "microvm" under TCG: guests can hang calibrating their clock; "auto" picks q35 here');
    }
    return {
      machine,
      accel,
      memoryMib: boot.program.memoryMib,
      vcpus: boot.program.vcpus,
      kernel: boot.launch.kernel || this.options.kernel,
      initrd: boot.initrd,
      kernelArgs: boot.net.kernelArgs,
      qmpSocket: join(boot.dir, 'qmp.sock'),
      net: boot.net.net,
      drives: boot.layout.drives,
    };
  }

  /** Restores the VM from its snapshot when there is one that loads, else boots it. */
  private async launchVm(boot: PreparedBoot<QemuNetwork>, spec: QemuVmSpec, onConsole: (line: string) => void): Promise<VmProcess> {
    const { program, launch, layout, log } = boot;
    // Snapshots: only where a saved state cannot go stale. Writable drives (ephemeral and
    // persistent volumes) would be seen through the page cache of another life, and a
    // tap guest keeps the address of the life it was saved in: those always boot.
    const store = this.options.snapshots;
    const snapshot = store && spec.net.mode === 'user' && layout.drives.every((d) => d.readOnly)
      ? { store, key: await this.snapshotKeyOf(spec, boot.baseInitramfs, boot.archive, boot.net.apiHost !== ''), control: join(boot.dir, 'ctl.sock') }
      : undefined;
    if (snapshot) spec.control = snapshot.control;
    const stopGraceMs = stopGrace(this.options.stopGraceMs, STOP_TIMEOUT_S[launch.aleph?.interface ?? 'binary']);
    const spawnVm = (args: string[], console?: (line: string) => void) =>
      VmProcess.spawn(boot.net.vmm.file, [...boot.net.vmm.prefix, ...args], {
        onConsole: console,
        endpoint: boot.net.endpoint,
        output: boot.slot.output,
        // The guest init's own stop-timeout for this program (13 s for ASGI) fits in the grace.
        stopGraceMs,
        log,
        console: withFields(this.console, { hash: shortHash(program.hash) }),
        hooks: { graceful: qmpCommand(spec.qmpSocket, 'system_powerdown'), forced: qmpCommand(spec.qmpSocket, 'quit') },
      });

    const saved = snapshot ? await snapshot.store.find(snapshot.key) : undefined;
    const restored = saved && snapshot ? await this.restore(spawnVm, { ...spec, incoming: saved.state }, snapshot.control, log) : undefined;
    if (restored) return restored;
    if (saved && snapshot) await snapshot.store.remove(snapshot.key);
    const vm = await spawnVm(qemuArgs(spec), onConsole);
    if (snapshot) vm.ready = () => void this.saveSnapshot(snapshot, spec.qmpSocket, program, log);
    return vm;
  }

  /** Erases an instance's disk and state (the owner's erase); it must not be running. */
  async erase(program: Program): Promise<boolean> {
    if (program.launch.kind !== 'machine') return false;
    return eraseMachine(program.launch);
  }

  /**
   * Everything a saved state depends on: the node's version, qemu, the kernel, the
   * base initramfs, the program's archive (code, entry, variables), its drives (each
   * file's identity), resources, machine and kernel arguments. Any change is a new
   * key, so an amended program, a new runtime or other resources never meet an old state.
   */
  private async snapshotKeyOf(spec: QemuVmSpec, baseInitramfs: string, archive: Buffer, guestApi: boolean): Promise<string> {
    const identity = fileIdentity;
    return snapshotKey({
      node: NODE_VERSION,
      qemu: await identity(findExecutable(this.options.binary) ?? this.options.binary),
      kernel: await identity(spec.kernel),
      base: await identity(baseInitramfs),
      archive: createHash('sha256').update(archive).digest('hex'),
      drives: await Promise.all((spec.drives ?? []).map(async (d) => ({ id: d.id, readOnly: d.readOnly, file: await identity(d.path) }))),
      memoryMib: spec.memoryMib,
      vcpus: spec.vcpus,
      machine: spec.machine,
      accel: spec.accel,
      kernelArgs: spec.kernelArgs,
      guestApi,
    });
  }

  /**
   * Starts a VM from saved state and gives the guest this life's clock and entropy.
   * Undefined (the VM gone) when the state does not load or the guest does not answer:
   * the caller boots instead.
   */
  private async restore(spawnVm: (args: string[]) => Promise<VmProcess>, spec: QemuVmSpec, control: string, log: Logger): Promise<VmProcess | undefined> {
    const vm = await spawnVm(qemuArgs(spec));
    try {
      const running = await vm.whileRunning(waitRunning(spec.qmpSocket, RESTORE_WAIT_MS));
      if (!running) throw new Error('qemu exited while loading the saved state');
      await controlGuest({ kind: 'serial', path: control }, restoreCommands(), RESTORE_WAIT_MS);
      vm.restored = true;
      return vm;
    } catch (err) {
      log.warn('snapshot restore failed, booting instead', { error: (err as Error).message });
      await vm.kill();
      await Promise.all([rm(control, { force: true }), rm(spec.qmpSocket, { force: true })]);
      return undefined;
    }
  }

  /** Saves the ready VM's state (qemu migration to a file), then lets it run on. Never throws. */
  private async saveSnapshot(snapshot: { store: SnapshotStore; key: string; control: string }, qmpSocket: string, program: Program, log: Logger): Promise<void> {
    try {
      // Only a guest whose agent answers can be restored correctly (clock, entropy).
      await controlGuest({ kind: 'serial', path: snapshot.control }, [`time ${Math.floor(Date.now() / 1000)} 0`], RESTORE_WAIT_MS);
    } catch (err) {
      log.warn('no snapshot: the guest agent does not answer (an initramfs built without aleph-agent?)', { error: (err as Error).message });
      return;
    }
    const t0 = performance.now();
    const entry = await snapshot.store.save(snapshot.key, snapshotLabel(program), async (statePath) => {
      const client = await QmpClient.connect(qmpSocket);
      try {
        await client.execute('migrate', { uri: `exec:cat > ${plainPath(statePath)}` });
        for (;;) {
          const status = (await client.execute('query-migrate')) as { status?: string; 'error-desc'?: string };
          if (status.status === 'completed') break;
          if (status.status === 'failed' || status.status === 'cancelled') throw new Error(`migration ${status.status}${status['error-desc'] ? `: ${status['error-desc']}` : ''}`);
          await sleep(50);
        }
      } finally {
        // A completed migration leaves the VM paused ('postmigrate'): it serves on.
        await client.execute('cont').catch(() => {});
        client.close();
      }
    });
    if (entry) log.info('snapshot saved', { key: entry.key.slice(0, 12), bytes: entry.size, save_ms: Math.round(performance.now() - t0) });
  }

  /**
   * Internet under user-mode networking without the host's loopback: slirp maps 10.0.2.2
   * to the host's 127.0.0.1 (Redis, local programs, other VMs' forwarded ports) and
   * QEMU 7.2 cannot turn that off, so qemu runs in a network namespace of its own with a
   * route out through pasta (../outbound.ts), where 127.0.0.1 holds only its own port
   * forward; pasta binds that port on the host's 127.0.0.1 for the node. A node that
   * cannot (not root, no pasta) runs qemu as before, and says what the guest can reach.
   */
  private async userNetOutbound(hostPort: number, dir: string, cleanups: Cleanup[], log: Logger): Promise<{ file: string; prefix: string[] }> {
    const found = outboundTools();
    const direct = { file: this.options.binary, prefix: [] };
    if ('missing' in found) {
      log.warn('user-mode VM with internet reaches the host\'s loopback at 10.0.2.2', { reason: found.missing });
      return direct;
    }
    try {
      const outbound = await openOutbound(found.tools, basename(dir), dir, { loopbackTcpPort: hostPort });
      cleanups.push(() => outbound.close());
      return { file: found.tools.nsenter, prefix: [`--net=${outbound.netns}`, this.options.binary] };
    } catch (error) {
      log.warn('user-mode VM with internet reaches the host\'s loopback at 10.0.2.2', { reason: (error as Error).message });
      return direct;
    }
  }

  /**
   * The guest API under user-mode networking: a guestfwd hands each guest connection to
   * 10.0.2.100:80 to `socat`, which qemu spawns per connection, towards a link on a unix
   * socket in this VM's own 0700 folder. Only this VM's forward knows that path, and no
   * local user can open it; a loopback TCP link cannot tell VMs apart (the forward is
   * not a descendant of qemu, glib's spawn double-forks) and any local user can reach it.
   */
  private async userNetGuestApi(socket: string, path: string): Promise<{ link: UnixGuestLink; command: string[] }> {
    const socat = findExecutable('socat');
    if (!socat) throw new DriverStartError('the guest API under user-mode networking needs socat on the host (apt install socat)');
    const link = await openUnixGuestLink({ socket, path });
    // -t 5: once one side has closed, the other gets 5 s to finish (an answer to a guest that
    // half-closed after its request), and no more: a socat per connection is a host process.
    return { link, command: [socat, '-t', '5', 'STDIO', `UNIX-CONNECT:${plainPath(path)}`] };
  }
}

/** Where loopback guest-links listen on the host (not 127.0.0.1, see guest-link.ts). */
export const GUEST_API_LOOPBACK = GUEST_LINK_LOOPBACK;

/** The label of a program's saved states (any version): a cold start with one may restore rather than take a warm VM. */
function snapshotLabel(program: Program): string {
  return `qemu ${program.hash}`;
}

export { machineArgs, MACHINE_STOP_GRACE_MS, type MachineSpec } from './machine.js';
export { qemuArgs, USER_NET, type QemuAccel, type QemuMachine, type QemuVmSpec } from './args.js';
export { QmpClient } from './qmp.js';
