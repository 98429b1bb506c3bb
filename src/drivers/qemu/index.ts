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
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, shortHash, type Logger } from '../../common/index.js';
import { buildProgramArchive, kvmUsable, writeConcatenated } from '../image/index.js';
import { prepareDisks, vmLayout, snapshotKey, STOP_TIMEOUT_S, type SnapshotStore } from '../vm/index.js';
import { guestNetworkArgs, networkOf, type NetworkPool } from '../net/index.js';
import { LOOPBACK_HOST, pickFreePort } from '../process/port.js';
import type { Program, VmLaunch } from '../../programs/index.js';
import { DriverStartError, type Driver, type Endpoint, type Instance, type InstanceNetwork, type Slot } from '../types.js';
import { plainPath, qemuArgs, USER_NET, type QemuAccel, type QemuMachine, type QemuVmSpec } from './args.js';
import { guestEnv, openGuestLink, openUnixGuestLink, type UnixGuestLink, GUEST_LINK_LOOPBACK } from '../guest-link.js';
import { openOutbound, outboundTools } from '../outbound.js';
import { checkExecutable, checkFile, findExecutable, IMAGE_HINT, safeName, setupError, withFields } from './checks.js';
import { QmpClient, qmpCommand } from './qmp.js';
import { controlGuest, restoreCommands } from './control.js';
import { VmProcess, type Cleanup } from './vm-process.js';
import { startMachine } from './machine.js';
import { eraseMachine } from '../machine/index.js';
import { stopGrace } from '../stop-grace.js';

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
  checkFile(problems, 'drivers.qemu.kernel', options.kernel, IMAGE_HINT);
  checkFile(problems, 'drivers.qemu.initramfs', options.initramfs, IMAGE_HINT);
  if (options.runDir === '') problems.push('drivers.qemu.run_dir is not set');
  if (options.network === 'tap' && !options.pool) problems.push('drivers.qemu.network = "tap" needs a [drivers.network] pool');
  if (options.network === 'tap') checkExecutable(problems, 'drivers.qemu.network = "tap"', 'nft', ' (apt install nftables; docs/networking.md)');
  return problems;
}

/** The node's version: a saved state is never restored by another one. */
const NODE_VERSION = (JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
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

  constructor(private readonly options: QemuDriverOptions) {
    const problems = checkQemuOptions(options);
    if (problems.length > 0) throw setupError('qemu', problems);
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
    if (program.launch.kind === 'machine') {
      await mkdir(this.options.runDir, { recursive: true, mode: 0o700 });
      const hash = shortHash(program.hash);
      return startMachine({
        binary: this.options.binary, runDir: this.options.runDir, accel: await this.resolveAccel(), stopGraceMs: this.options.stopGraceMs,
        pool: this.options.network === 'tap' ? this.options.pool : undefined,
        log: withFields(this.log, { hash, exec: slot.executionId }), console: withFields(this.console, { hash }),
      }, program, program.launch, slot);
    }
    const launch = vmLaunchOf(program);
    const hash = shortHash(program.hash);
    const log = withFields(this.log, { hash, exec: slot.executionId });
    const cleanups: Cleanup[] = [];
    const undo = async () => {
      for (const step of cleanups.splice(0).reverse()) await Promise.resolve(step()).catch(() => {});
    };
    try {
      await mkdir(this.options.runDir, { recursive: true, mode: 0o700 });
      const dir = await mkdtemp(join(this.options.runDir, `${safeName(slot.executionId)}-`));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));

      const kernelArgs: string[] = [];
      let endpoint: Endpoint;
      let net: QemuVmSpec['net'];
      let apiHost = '';
      let guestApi: Endpoint | undefined;
      let network: InstanceNetwork | undefined;
      let vmm = { file: this.options.binary, prefix: [] as string[] };
      if (this.options.network === 'tap') {
        // A program's IPv6 is the monitor's microvm address for its hash (vm type 1).
        const lease = await this.options.pool!.acquire(slot.executionId, { internet: launch.internet, hash: program.hash, vmType: program.persistent ? 'persistent_program' : 'microvm' });
        cleanups.push(() => this.options.pool!.release(lease));
        net = { mode: 'tap', tap: lease.tap };
        endpoint = { kind: 'tcp', host: lease.guestIp, port: 8080 };
        network = networkOf(lease);
        kernelArgs.push(...guestNetworkArgs(lease));
        if (slot.guestApi) {
          // On the tap's host address (up now), for this guest only: other guests can route here too.
          const opened = await openGuestLink({ socket: slot.guestApi.socket, host: lease.hostIp, allowedPeers: [lease.guestIp] });
          cleanups.push(() => opened.close()); // before the tap goes (cleanups run in reverse)
          guestApi = { kind: 'tcp', host: opened.host, port: opened.port };
          apiHost = opened.url;
        }
      } else {
        const hostPort = await pickFreePort(LOOPBACK_HOST);
        net = { mode: 'user', hostPort, internet: launch.internet };
        endpoint = { kind: 'tcp', host: LOOPBACK_HOST, port: hostPort };
        kernelArgs.push(`aleph.ip=${USER_NET.guest}`, `aleph.gw=${USER_NET.gateway}`, `aleph.dns=${USER_NET.dns}`);
        if (launch.internet) vmm = await this.userNetOutbound(hostPort, dir, cleanups, log);
        if (slot.guestApi) {
          const forward = await this.userNetGuestApi(slot.guestApi.socket, join(dir, 'guest-api.sock'));
          cleanups.push(() => forward.link.close());
          guestApi = { kind: 'unix', path: forward.link.path };
          net.guestApiCommand = forward.command;
          apiHost = `http://${USER_NET.guestApi}`;
        }
      }

      // The guest API's variables win over the program's own: they name this execution's endpoint.
      const env = apiHost ? { ...launch.env, ...guestEnv(apiHost, program.sender ?? '') } : launch.env;
      const layout = vmLayout({ hash: program.hash, launch: { ...launch, env }, code: await codeKind(launch.code), vmDir: dir });
      const releaseDisks = await prepareDisks(layout);
      cleanups.push(releaseDisks);
      const archive = await buildProgramArchive({ codeDir: layout.codeDir, files: layout.files }).catch((err: Error) => {
        throw new DriverStartError(`cannot pack the program's code: ${err.message}`);
      });
      const initrd = join(dir, 'initrd');
      await writeConcatenated(initrd, [launch.initramfs || this.options.initramfs, archive]);

      const qmpSocket = join(dir, 'qmp.sock');
      const accel = await this.resolveAccel();
      // microvm needs a paravirtual clock: under TCG it has no reliable timer to calibrate the TSC against.
      const machine: QemuMachine = this.options.machine === 'auto' ? (accel === 'kvm' ? 'microvm' : 'q35') : this.options.machine;
      if (machine === 'microvm' && accel === 'tcg' && !this.warnedMicrovmTcg) {
        this.warnedMicrovmTcg = true;
        this.log.warn('machine = "microvm" under TCG: guests can hang calibrating their clock; "auto" picks q35 here');
      }
      const spec: QemuVmSpec = {
        machine,
        accel,
        memoryMib: program.memoryMib,
        vcpus: program.vcpus,
        kernel: launch.kernel || this.options.kernel,
        initrd,
        kernelArgs,
        qmpSocket,
        net,
        drives: layout.drives,
      };
      // Snapshots: only where a saved state cannot go stale. Writable drives (ephemeral and
      // persistent volumes) would be seen through the page cache of another life, and a
      // tap guest keeps the address of the life it was saved in: those always boot.
      const store = this.options.snapshots;
      const snapshot = store && net.mode === 'user' && layout.drives.every((d) => d.readOnly)
        ? { store, key: await this.snapshotKeyOf(spec, launch.initramfs || this.options.initramfs, archive, apiHost !== ''), control: join(dir, 'ctl.sock') }
        : undefined;
      if (snapshot) spec.control = snapshot.control;
      const stopGraceMs = stopGrace(this.options.stopGraceMs, STOP_TIMEOUT_S[launch.aleph?.interface ?? 'binary']);
      const spawnVm = (args: string[], onConsole?: (line: string) => void) =>
        VmProcess.spawn(vmm.file, [...vmm.prefix, ...args], {
          onConsole,
          endpoint,
          output: slot.output,
          // The guest init's own stop-timeout for this program (13 s for ASGI) fits in the grace.
          stopGraceMs,
          log,
          console: withFields(this.console, { hash }),
          hooks: { graceful: qmpCommand(qmpSocket, 'system_powerdown'), forced: qmpCommand(qmpSocket, 'quit') },
        });

      const saved = snapshot ? await snapshot.store.find(snapshot.key) : undefined;
      const restored = saved && snapshot ? await this.restore(spawnVm, { ...spec, incoming: saved.state }, snapshot.control, log) : undefined;
      if (saved && snapshot && !restored) await snapshot.store.remove(snapshot.key);
      let vm: VmProcess;
      if (restored) {
        vm = restored;
      } else {
        let markSeen!: () => void;
        const seen = new Promise<void>((resolve) => (markSeen = resolve));
        vm = await spawnVm(qemuArgs(spec), (line) => {
          if (line.startsWith(GUEST_STARTED_MARKER)) markSeen();
        });
        for (const step of cleanups.splice(0)) vm.onCleanup(step);
        if (snapshot) vm.ready = () => void this.saveSnapshot(snapshot, qmpSocket, program, log);
        // Launched = the guest's init started the program. Probing HTTP before that is
        // wasted: qemu's port forward accepts connections that then hang while the guest
        // boots. Readiness itself stays HTTP-level (the orchestrator's probe).
        const launched = await vm.launchedWithin(seen, LAUNCH_WAIT_MS);
        if (!launched) log.info('no launch line from the guest yet');
      }
      for (const step of cleanups.splice(0)) vm.onCleanup(step); // restored: its steps from now on
      if (guestApi) vm.guestApi = guestApi;
      if (network) vm.network = network;
      log.info(vm.restored ? 'vm restored' : 'vm started', { pid: vm.pid, accel, machine, memory_mib: program.memoryMib, vcpus: program.vcpus, drives: layout.drives.length, endpoint: `${endpoint.host}:${endpoint.port}` });
      return vm;
    } catch (err) {
      await undo();
      if (err instanceof DriverStartError) throw err;
      throw new DriverStartError(`qemu: ${(err as Error).message}`, { cause: err });
    }
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
    const identity = async (path: string) => {
      const s = await stat(path);
      return { path, size: s.size, mtime: s.mtimeMs, ino: s.ino };
    };
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
      await controlGuest(control, restoreCommands(), RESTORE_WAIT_MS);
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
      await controlGuest(snapshot.control, [`time ${Math.floor(Date.now() / 1000)} 0`], RESTORE_WAIT_MS);
    } catch (err) {
      log.warn('no snapshot: the guest agent does not answer (an initramfs built without aleph-agent?)', { error: (err as Error).message });
      return;
    }
    const t0 = performance.now();
    const entry = await snapshot.store.save(snapshot.key, `qemu ${program.hash}`, async (statePath) => {
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

export { machineArgs, MACHINE_STOP_GRACE_MS, type MachineSpec } from './machine.js';
export { qemuArgs, USER_NET, type QemuAccel, type QemuMachine, type QemuVmSpec } from './args.js';
export { QmpClient } from './qmp.js';
export { VmProcess } from './vm-process.js';
