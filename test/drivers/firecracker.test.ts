// The Firecracker driver against the fakes in test/fixtures/firecracker/ (as strict
// as Firecracker 1.16 and its jailer, see firecracker-fakes.test.ts): the fake
// serves the real API on the unix socket and runs the guest's program as a local
// process on the guest address, so the whole request path (node -> tap address ->
// program) works without KVM. Under the fake jailer the VM runs as an unprivileged
// uid in a jail the jailer made, with a cgroup, a tap made for that uid, and is
// cleaned up (chroot and cgroup) when it stops.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AlephEdgeNode } from '../../src/app/index.js';
import { FIRECRACKER_BASE_BOOT_ARGS_MAX, setLogLevel } from '../../src/common/index.js';
import { loadConfig } from '../../src/config/index.js';
import { FirecrackerDriver, waitForHttp } from '../../src/drivers/index.js';
import {
  cgroup2Mount,
  chrootRoot,
  firecrackerBootArgs,
  firecrackerConfig,
  jailerArgs,
  kernelFormatProblem,
  jailerPrivilegeProblem,
  socketAccessProblem,
  type FirecrackerDriverOptions,
} from '../../src/drivers/firecracker/index.js';
import { encodeCpio } from '../../src/drivers/image/index.js';
import { NetworkPool } from '../../src/drivers/net/index.js';
import { programHash, request, until, type TestNode } from '../helpers/node.js';
import { ROOT } from '../helpers/paths.js';
import { fakeKernel } from './firecracker-helpers.js';
import { httpGet, makeProgram, nextSlot } from './helpers.js';
import { netnsSkipReason, processesWith, standInGuestApi, tcpListeners, writeGuestProgram } from './qemu-guest.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');

const FAKE = join(ROOT, 'test/fixtures/firecracker/firecracker.mjs');
const FAKE_JAILER = join(ROOT, 'test/fixtures/firecracker/jailer.mjs');
const NOBODY = 65534;

const VM = { kernel: '/vmlinux', initrd: '/initrd', extraBootArgs: '', arch: 'x86_64' as const, vcpus: 2, memoryMib: 256, tap: 'aetap5', slot: 5, guestIp: '172.16.0.22/30', gateway: '172.16.0.21' };

describe('firecracker configuration', () => {
  it('boots kernel + initramfs and passes the drives through in order, none of them the root device', () => {
    const drives = [
      { id: 'runtime', path: '/runtime.squashfs', readOnly: true },
      { id: 'code', path: '/code.img', readOnly: true },
      { id: 'volume_0', path: '/data.ext4', readOnly: false },
    ];
    const config = firecrackerConfig({ ...VM, drives, vsock: '/run/v.sock' });
    assert.deepEqual(config.bootSource, {
      kernel_image_path: '/vmlinux',
      initrd_path: '/initrd',
      boot_args: 'console=ttyS0 reboot=k panic=1 pci=off quiet i8042.noaux i8042.nomux i8042.dumbkbd aleph.ip=172.16.0.22/30 aleph.gw=172.16.0.21',
    });
    assert.deepEqual(config.drives, [
      { drive_id: 'runtime', path_on_host: '/runtime.squashfs', is_root_device: false, is_read_only: true },
      { drive_id: 'code', path_on_host: '/code.img', is_root_device: false, is_read_only: true },
      { drive_id: 'volume_0', path_on_host: '/data.ext4', is_root_device: false, is_read_only: false },
    ]);
    assert.deepEqual(config.machine, { vcpu_count: 2, mem_size_mib: 256, smt: false });
    assert.deepEqual(config.network, { iface_id: 'eth0', host_dev_name: 'aetap5', guest_mac: '06:00:ac:10:00:05' });
    assert.deepEqual(config.vsock, { guest_cid: 3, uds_path: '/run/v.sock' });
  });

  it('refuses drive ids the API refuses (letters, digits and _ only)', () => {
    assert.throws(() => firecrackerConfig({ ...VM, drives: [{ id: 'code-1', path: '/c', readOnly: true }] }), /drive id "code-1": Firecracker allows only letters, digits and '_'/);
  });

  it('boot arguments do not contradict what Firecracker appends (no root=, no init=)', () => {
    const longest6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const args = firecrackerBootArgs({ guestIp: '255.255.255.255/32', gateway: '255.255.255.255', ipv6: { address: `${longest6}/124`, gateway: longest6 }, extraBootArgs: '', arch: 'x86_64' });
    assert.match(args, / aleph\.ip6=ffff:[f:]+\/124 aleph\.gw6=ffff:[f:]+( |$)/);
    assert.doesNotMatch(args, /(^| )(root|init|rdinit|virtio_mmio\.device)=/);
    assert.ok(args.length <= FIRECRACKER_BASE_BOOT_ARGS_MAX, 'the config check reserves room for our longest arguments');
    assert.equal(args.split(' ').filter((a) => a.startsWith('console=')).length, 1);
    assert.doesNotMatch(firecrackerBootArgs({ guestIp: '10.0.0.2/30', gateway: '10.0.0.1', extraBootArgs: '', arch: 'aarch64' }), /i8042/);
    assert.throws(() => firecrackerBootArgs({ guestIp: '10.0.0.2/30', gateway: '10.0.0.1', extraBootArgs: 'loglevel=7 root=/dev/vda', arch: 'x86_64' }), /root= is set by Firecracker/);
    assert.throws(() => firecrackerConfig({ ...VM, drives: [], extraBootArgs: 'x'.repeat(2000) }), /does not fit Firecracker's 2048-byte buffer/);
  });

  it('passes --id to the jailer only: the jailer gives it to firecracker, which refuses it twice', () => {
    const args = jailerArgs({ jailer: '/usr/bin/jailer', firecracker: '/usr/bin/firecracker-v1.16.1-x86_64', id: 'aleph-3', uid: 900, gid: 901, chrootBaseDir: '/srv/jailer', cgroupRoot: '/sys/fs/cgroup', memoryMib: 128, vcpus: 2 });
    const after = args.slice(args.indexOf('--') + 1);
    assert.deepEqual(after, ['--api-sock', '/run/firecracker.socket']);
    assert.equal(args.filter((a) => a === '--id').length, 1);
    assert.deepEqual(args.filter((_, i) => args[i - 1] === '--cgroup'), [`memory.max=${192 * 1024 * 1024}`, 'cpu.max=200000 100000']);
    assert.equal(chrootRoot({ chrootBaseDir: '/srv/jailer', firecracker: '/usr/bin/firecracker-v1.16.1-x86_64', id: 'aleph-3' }), '/srv/jailer/firecracker-v1.16.1-x86_64/aleph-3/root');
  });

  it('finds the cgroup v2 hierarchy in /proc/mounts like the jailer', () => {
    assert.equal(cgroup2Mount('cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n'), '/sys/fs/cgroup/unified');
    assert.equal(cgroup2Mount('tmpfs /tmp tmpfs rw 0 0\n'), undefined);
  });

  it('the jailer starts as root, and the node reaches a socket in a 0700 jail of another uid only with CAP_DAC_OVERRIDE', () => {
    assert.equal(jailerPrivilegeProblem(0), undefined);
    assert.match(jailerPrivilegeProblem(998) ?? '', /the jailer must start as root .*firecracker-jailer\.conf/);
    assert.equal(socketAccessProblem(900, 0, 'CapEff:\t000001ffffffffff\n'), undefined);
    assert.equal(socketAccessProblem(900, 1000, 'CapEff:\t0000000000000002\n'), undefined);
    assert.match(socketAccessProblem(900, 0, 'CapEff:\t0000000000001000\n') ?? '', /cannot reach the API socket .* without CAP_DAC_OVERRIDE/);
  });

  it('refuses programs beyond the API limits at start, before any tap or file (programs from Aleph skip check-config)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-fc-limits-'));
    try {
      await writeFile(join(dir, 'vmlinux'), fakeKernel('elf'));
      await writeFile(join(dir, 'initramfs'), '');
      const pool = new NetworkPool({ pool: '10.213.14.0/29', prefix: 30, tapPrefix: 'aefl', stateDir: join(dir, 'net'), outboundInterface: '' });
      const driver = new FirecrackerDriver({
        stopGraceMs: 100, binary: FAKE, jailer: '', kernel: join(dir, 'vmlinux'), initramfs: join(dir, 'initramfs'), rootfs: '', runDir: join(dir, 'run'),
        chrootBaseDir: join(dir, 'jail'), cgroupRoot: '', uid: 0, gid: 0, apiTimeoutMs: 1000, extraBootArgs: '', pool,
      });
      for (const [vcpus, memoryMib, message] of [[33, 128, /1-32 vCPUs, the program asks for 33/], [0, 128, /1-32 vCPUs/], [1, 0, /at least 1 MiB/]] as const) {
        const program = vmProgram('');
        program.vcpus = vcpus;
        program.memoryMib = memoryMib;
        await assert.rejects(driver.start(program, nextSlot()), message);
      }
      assert.ok(!existsSync(join(dir, 'net')) && !existsSync(join(dir, 'run')), 'nothing was set up');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('start-up checks name every missing piece, the kernel format per architecture and the jail uid', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-fc-checks-'));
    try {
      const options: FirecrackerDriverOptions = {
        stopGraceMs: 100, binary: '/nope/firecracker', jailer: 'no-such-jailer', kernel: '', initramfs: '', runDir: '/tmp', chrootBaseDir: '/srv/jailer',
        rootfs: '', cgroupRoot: '', uid: 0, gid: 0, apiTimeoutMs: 1000, extraBootArgs: '', pool: undefined,
      };
      assert.throws(() => new FirecrackerDriver(options), (err: Error) => {
        for (const part of [
          /drivers\.firecracker\.binary: \/nope\/firecracker does not exist or is not executable/,
          /drivers\.firecracker\.jailer: no-such-jailer is not in PATH/,
          /drivers\.firecracker\.kernel is not set/,
          /drivers\.firecracker\.initramfs is not set; every Firecracker VM boots kernel \+ initramfs/,
          /needs tap networking: a \[drivers\.network\] pool/,
          /set an unprivileged uid:gid for the jail/,
        ]) assert.match(err.message, part);
        return true;
      });
      for (const f of ['elf', 'bzimage', 'arm64'] as const) await writeFile(join(dir, f), fakeKernel(f));
      assert.equal(kernelFormatProblem(join(dir, 'elf'), 'x86_64'), undefined);
      assert.equal(kernelFormatProblem(join(dir, 'bzimage'), 'x86_64'), undefined);
      assert.match(kernelFormatProblem(join(dir, 'arm64'), 'x86_64') ?? '', /neither an ELF vmlinux nor a bzImage/);
      assert.match(kernelFormatProblem(join(dir, 'elf'), 'aarch64') ?? '', /not an arm64 PE Image .* not an ELF vmlinux/);
      assert.equal(kernelFormatProblem(join(dir, 'arm64'), 'aarch64'), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const skip = netnsSkipReason();

/** An executable `name` in `dir` that runs `target` with extra variables. */
async function wrapper(dir: string, name: string, target: string, env: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, name);
  const vars = Object.entries(env).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
  await writeFile(file, `#!/bin/sh\nexport ${vars}\nexec ${JSON.stringify(target)} "$@"\n`, { mode: 0o755 });
  return file;
}

/**
 * The fake firecrackers this test started: those whose environment names its log file.
 * The fake's path alone would also match another test file's VMs running alongside.
 */
function fakesLogging(log: string): number[] {
  return processesWith(FAKE).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`FAKE_FIRECRACKER_LOG=${log}`);
    } catch {
      return false;
    }
  });
}

function apiCalls(file: string): Array<{ method: string; path: string; body: Record<string, unknown>; status: number; cmdline?: string }> {
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

describe('firecracker driver with the fake firecracker', { skip: skip || false, timeout: 90_000 }, () => {
  let dir: string;
  let kernel: string;
  let initramfs: string;
  let code: string;
  const taps = (prefix: string) =>
    execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
      .filter((n): n is string => n !== undefined && n.startsWith(prefix));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-fc-'));
    // The jailed fake runs as nobody and (not really chrooted) reaches its jail through this path.
    await chmod(dir, 0o755);
    kernel = join(dir, 'vmlinux');
    await writeFile(kernel, fakeKernel('elf'));
    initramfs = join(dir, 'base.cpio');
    await writeFile(initramfs, encodeCpio([{ type: 'file', path: 'init', mode: 0o755, data: Buffer.from('#!/bin/sh\n') }]));
    code = await writeGuestProgram(dir);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('configures the VM over the API and serves a request through the node into the guest program', async () => {
    const nodeDir = join(dir, 'node');
    const runDir = join(nodeDir, 'vms');
    const stateDir = join(nodeDir, 'net');
    const apiLog = join(dir, 'api.log');
    await mkdir(nodeDir, { recursive: true });
    // Drivers start the VMM with a minimal environment: a wrapper passes the fake its log file.
    const binary = await wrapper(join(dir, 'bin-api-log'), 'firecracker', FAKE, { FAKE_FIRECRACKER_LOG: apiLog });
    const hash = programHash('firecracker-guest');
    const config = join(nodeDir, 'aleph-edge.toml');
    await writeFile(
      config,
      [
        '[server]', 'domain = "edge.test"', 'https_listen = ["127.0.0.1:8443"]', 'http_listen = []',
        `status_socket = "${join(nodeDir, 'status.sock')}"`, 'drain_timeout = "5s"',
        '[tls]', 'mode = "internal"', `storage = "${join(nodeDir, 'certs')}"`,
        '[orchestrator]', 'driver = "firecracker"', 'idle_timeout = "500ms"', 'boot_timeout = "15s"', 'stop_grace = "3s"',
        '[drivers.firecracker]', `binary = "${binary}"`, `kernel = "${kernel}"`, `initramfs = "${initramfs}"`, `run_dir = "${runDir}"`,
        '[drivers.network]', 'pool = "10.213.9.0/28"', 'tap_prefix = "aefc"', `state_dir = "${stateDir}"`,
        '[[programs.local]]', 'name = "guest"', `hash = "${hash}"`, `code = "${code}"`, 'vcpus = 2', 'memory_mib = 256',
        'env = { GREETING = "hello through firecracker" }',
      ].join('\n') + '\n',
    );
    const settings = await loadConfig(config);
    settings.server.httpsListen = [{ host: '127.0.0.1', port: 0 }];
    const node = await AlephEdgeNode.start(settings, { version: 'test', inherited: [] });
    const testNode = {
      node, settings, dir: nodeDir, configFile: config, domain: 'edge.test', httpsPort: node.port('https')!, httpPort: 0,
      socket: settings.server.statusSocket, ca: await readFile(join(nodeDir, 'certs/internal/ca.crt'), 'utf8'), close: async () => node.drain(),
    } satisfies TestNode;
    try {
      const first = await request(testNode, { host: 'edge.test', path: `/vm/${hash}/index.html` });
      assert.equal(first.status, 200, first.body);
      assert.equal(first.body, 'hello from the guest\n');
      const env = await request(testNode, { host: 'edge.test', path: `/vm/${hash}/cgi-bin/env` });
      assert.match(env.body, /GREETING=hello through firecracker/);
      assert.deepEqual(taps('aefc'), ['aefc0']);

      await until(() => fakesLogging(apiLog).length === 0, 10_000, 'the VM to stop after idle_timeout');
      await until(() => taps('aefc').length === 0, 5_000, 'the tap device to be removed');
      await until(async () => (await readdir(runDir)).length === 0, 5_000, 'the per-VM directory to be removed');
    } finally {
      await node.drain();
    }

    const calls = apiCalls(apiLog);
    const puts = calls.filter((c) => c.method === 'PUT');
    assert.deepEqual(puts.map((c) => `${c.path} ${c.status}`), [
      '/boot-source 204', '/machine-config 204', '/network-interfaces/eth0 204', '/actions 204', '/actions 204',
    ]);
    assert.match(String(puts[0]!.body.boot_args), /aleph\.ip=10\.213\.9\.2\/30 aleph\.gw=10\.213\.9\.1/);
    assert.deepEqual(puts[1]!.body, { vcpu_count: 2, mem_size_mib: 256, smt: false });
    assert.equal(puts[2]!.body.host_dev_name, 'aefc0');
    assert.deepEqual(puts.slice(3).map((c) => c.body.action_type), ['InstanceStart', 'SendCtrlAltDel']);
    // What the guest kernel got: our arguments, then Firecracker's one virtio_mmio entry (the network).
    assert.match(calls.find((c) => c.cmdline)!.cmdline!, /aleph\.gw=10\.213\.9\.1 virtio_mmio\.device=4K@0xc0001000:5$/);
    assert.deepEqual(await readdir(stateDir), [], 'no lease records left');
  });

  it('on aarch64 stops without SendCtrlAltDel (the API refuses it there): SIGTERM, then clean-up', async () => {
    const apiLog = join(dir, 'api-arm.log');
    const armKernel = join(dir, 'Image');
    await writeFile(armKernel, fakeKernel('arm64'));
    const binary = await wrapper(join(dir, 'bin-arm'), 'firecracker', FAKE, { FAKE_FIRECRACKER_LOG: apiLog, FAKE_FIRECRACKER_ARCH: 'aarch64' });
    const pool = new NetworkPool({ pool: '10.213.11.0/29', prefix: 30, tapPrefix: 'aefa', stateDir: join(dir, 'arm-net'), outboundInterface: '' });
    assert.throws(() => new FirecrackerDriver({ ...driverBase(binary, pool), kernel, arch: 'aarch64' }), /not an arm64 PE Image/);
    const driver = new FirecrackerDriver({ ...driverBase(binary, pool), kernel: armKernel, arch: 'aarch64' });
    const program = vmProgram(code);
    const instance = await driver.start(program, nextSlot());
    try {
      await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 10_000 });
    } finally {
      await instance.stop();
    }
    const exit = await instance.exited;
    assert.equal(exit.requested, true);
    assert.equal(exit.signal, 'SIGTERM');
    const actions = apiCalls(apiLog).filter((c) => c.path === '/actions').map((c) => c.body.action_type);
    assert.deepEqual(actions, ['InstanceStart']);
    assert.doesNotMatch(apiCalls(apiLog).find((c) => c.cmdline)!.cmdline!, /i8042|virtio_mmio/);
    assert.deepEqual(taps('aefa'), []);
    assert.deepEqual(await readdir(join(dir, 'arm-run')), []);
  });

  it('gives the guest its API at the tap\'s host address, for the guest\'s address only, and closes it with the VM', async () => {
    const binary = await wrapper(join(dir, 'bin-api'), 'firecracker', FAKE, { FAKE_FIRECRACKER_LOG: join(dir, 'api-guestapi.log') });
    const pool = new NetworkPool({ pool: '10.213.11.16/30', prefix: 30, tapPrefix: 'aefg', stateDir: join(dir, 'api-net'), outboundInterface: '' });
    const driver = new FirecrackerDriver({ ...driverBase(binary, pool), runDir: join(dir, 'api-run') });
    const api = await standInGuestApi(join(dir, 'guest-api.sock'));
    const program = vmProgram(code);
    program.sender = '0x5a3bE3a63C3C8bD9c1B0a1F8D4b2a8E31bC0f2D1';
    try {
      const instance = await driver.start(program, { ...nextSlot(), guestApi: { socket: api.socket } });
      try {
        await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 10_000 });
        const reply = (await httpGet(instance.endpoint, '/cgi-bin/api')).body;
        const url = /^ALEPH_API_HOST=(http:\/\/10\.213\.11\.17:(\d+))$/m.exec(reply);
        assert.ok(url, reply);
        assert.match(reply, new RegExp(`^ALEPH_ADDRESS_TO_USE=${program.sender}$`, 'm'));
        assert.equal(tcpListeners('10.213.11.17').length, 1);
        assert.deepEqual(instance.guestApi, { kind: 'tcp', host: '10.213.11.17', port: Number(url[2]) }, 'the instance reports its guest-link listener');
        // The fake runs the guest program on the host, so its own calls do not come from the
        // guest address; connect from there (as a real guest would) and from elsewhere.
        const port = Number(url[2]);
        assert.equal(await rawGet('10.213.11.17', port, '10.213.11.18', '/cache/get/probe'), 'probe answered through the socket\n');
        assert.equal(await rawGet('10.213.11.17', port, '10.213.11.17', '/cache/get/probe'), '', 'another peer is cut off');
        assert.deepEqual(api.requests, ['GET /cache/get/probe']);
      } finally {
        await instance.stop();
      }
      assert.deepEqual(tcpListeners('10.213.11.17'), [], 'the link closed with the VM');
      assert.deepEqual(taps('aefg'), []);
    } finally {
      await api.close();
    }
  });

  it('boots end to end under the jailer: a jail uid, its own tap, a reachable socket, a clean stop, chroot and cgroup removed', async () => {
    const base = join(dir, 'jail');
    const cgroupRoot = join(dir, 'cgroup');
    await mkdir(cgroupRoot, { recursive: true });
    await writeFile(join(cgroupRoot, 'cgroup.controllers'), 'cpu memory pids\n');
    const mounts = join(dir, 'mounts');
    await writeFile(mounts, `cgroup2 ${cgroupRoot} cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n`);
    const jailLog = join(dir, 'jailer.log');
    const apiLog = join(dir, 'api-jail.log');
    await writeFile(apiLog, '');
    await chown(apiLog, NOBODY, NOBODY); // the jailed fake writes it as the jail uid
    const jailer = await wrapper(join(dir, 'bin-jailer'), 'jailer', FAKE_JAILER, { FAKE_JAILER_LOG: jailLog, FAKE_JAILER_PROC_MOUNTS: mounts });
    // A release tarball's layout: `firecracker` is a symlink to the versioned binary.
    const release = await wrapper(join(dir, 'release'), 'firecracker-v1.16.1-x86_64', FAKE, { FAKE_FIRECRACKER_LOG: apiLog });
    const binary = join(dir, 'release', 'firecracker');
    await symlink(release, binary);
    const jailDir = join(base, 'firecracker-v1.16.1-x86_64', 'aleph-0');
    await mkdir(join(jailDir, 'root', 'dev', 'net'), { recursive: true });
    await writeFile(join(jailDir, 'root', 'dev', 'net', 'tun'), 'left by a crash');
    const stateDir = join(dir, 'jail-net');
    const pool = new NetworkPool({ pool: '10.213.10.0/29', prefix: 30, tapPrefix: 'aefj', stateDir, outboundInterface: '' });
    const driver = new FirecrackerDriver({ ...driverBase(binary, pool), jailer, chrootBaseDir: base, cgroupRoot, uid: NOBODY, gid: NOBODY });
    const instance = await driver.start(vmProgram(code), nextSlot());
    const cgroup = join(cgroupRoot, 'firecracker-v1.16.1-x86_64', 'aleph-0');
    try {
      assert.deepEqual(instance.endpoint, { kind: 'tcp', host: '10.213.10.2', port: 8080 });
      await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 10_000 });
      assert.equal((await httpGet(instance.endpoint, '/index.html')).body, 'hello from the guest\n');

      const root = join(jailDir, 'root');
      assert.ok(!existsSync(join(base, 'firecracker')), 'no jail under the symlink name');
      for (const d of ['', 'run']) {
        const st = statSync(join(root, d));
        assert.deepEqual([st.mode & 0o777, st.uid], [0o700, NOBODY], `the jailer's /${d}`);
      }
      assert.ok(statSync(join(root, 'dev/net/tun')).isCharacterDevice(), 'the leftover chroot was removed before the jailer made its devices');
      assert.equal(statSync(join(root, 'vmlinux')).ino, statSync(kernel).ino, 'the kernel is hard-linked into the chroot');
      assert.equal(statSync(join(root, 'initrd')).uid, NOBODY);
      assert.equal(statSync(join(root, 'run/firecracker.socket')).uid, NOBODY, 'firecracker made its socket as the jail uid');
      // The tap was made for the jail uid: the fake opened it as nobody (TUNSETIFF), like a jailed Firecracker.
      const tapOwner = readFileSync('/sys/class/net/aefj0/owner', 'utf8').trim();
      assert.equal(tapOwner, String(NOBODY));
      assert.ok(existsSync(cgroup), 'the jailer made the cgroup');

      const jailed = JSON.parse(readFileSync(jailLog, 'utf8').trim()) as { id: string; 'exec-file': string; cgroup: { location: string; properties: unknown }; exec: string[] };
      assert.equal(jailed['exec-file'], release, 'the driver names the resolved file, the one the jailer names the jail after');
      assert.deepEqual(jailed.cgroup.properties, [{ file: 'memory.max', value: String((128 + 64) * 1024 * 1024) }, { file: 'cpu.max', value: '100000 100000' }]);
      assert.equal(jailed.exec[0], '/firecracker-v1.16.1-x86_64');
      assert.deepEqual(jailed.exec.slice(1, 3), ['--id', 'aleph-0']);
      assert.deepEqual(jailed.exec.slice(-2), ['--api-sock', '/run/firecracker.socket']);
    } finally {
      await instance.stop();
    }
    const exit = await instance.exited;
    assert.equal(exit.requested, true);
    assert.equal(exit.code, 0, 'SendCtrlAltDel: the guest shut down and the VMM exited');
    assert.ok(!existsSync(jailDir), 'the chroot is removed on stop');
    assert.ok(!existsSync(cgroup), 'the cgroup is removed on stop');
    assert.deepEqual(taps('aefj'), []);
    assert.deepEqual(fakesLogging(apiLog), []);
    assert.deepEqual(apiCalls(apiLog).filter((c) => c.method && c.status !== 204 && c.status !== 200), [], 'every API call succeeded');
  });

  it('passes the layout\'s drives through under the jailer: in order, none root, shared ones linked in, writable ones owned by the jail uid', async () => {
    const base = join(dir, 'jail-drives');
    const cgroupRoot = join(dir, 'cgroup-drives');
    await mkdir(cgroupRoot, { recursive: true });
    await writeFile(join(cgroupRoot, 'cgroup.controllers'), 'cpu memory\n');
    const mounts = join(dir, 'mounts-drives');
    await writeFile(mounts, `cgroup2 ${cgroupRoot} cgroup2 rw 0 0\n`);
    const apiLog = join(dir, 'api-drives.log');
    await writeFile(apiLog, '');
    await chown(apiLog, NOBODY, NOBODY);
    const jailer = await wrapper(join(dir, 'bin-jailer-drives'), 'jailer', FAKE_JAILER, { FAKE_JAILER_PROC_MOUNTS: mounts });
    const binary = await wrapper(join(dir, 'bin-drives'), 'firecracker', FAKE, { FAKE_FIRECRACKER_LOG: apiLog });
    const images = join(dir, 'images');
    await mkdir(join(images, 'rt', 'bin'), { recursive: true });
    await mkdir(join(images, 'code'), { recursive: true });
    await writeFile(join(images, 'code', 'start'), '#!/bin/sh\n', { mode: 0o755 });
    for (const name of ['rt', 'code']) execFileSync('mksquashfs', [join(images, name), join(images, `${name}.squashfs`), '-quiet', '-noappend'], { stdio: 'ignore' });
    const persistent = join(images, 'volumes', 'p.img');
    const pool = new NetworkPool({ pool: '10.213.13.0/29', prefix: 30, tapPrefix: 'aefd', stateDir: join(dir, 'drives-net'), outboundInterface: '' });
    const driver = new FirecrackerDriver({ ...driverBase(binary, pool), jailer, chrootBaseDir: base, cgroupRoot, uid: NOBODY, gid: NOBODY });
    const program = vmProgram(join(images, 'code.squashfs'));
    program.launch = {
      ...(program.launch as Extract<typeof program.launch, { kind: 'vm' }>),
      entrypoint: '/opt/code/start',
      aleph: {
        interface: 'binary', asgiApp: '', runtime: join(images, 'rt.squashfs'),
        volumes: [
          { mount: '/data', kind: 'persistent', source: persistent, sizeMib: 8, readOnly: false },
          { mount: '/scratch', kind: 'ephemeral', source: '', sizeMib: 8, readOnly: false },
        ],
      },
    };
    const instance = await driver.start(program, nextSlot());
    await instance.stop();
    await instance.exited;
    const drives = apiCalls(apiLog).filter((c) => c.path?.startsWith('/drives/'));
    assert.deepEqual(drives.map((c) => [c.path, c.body.path_on_host, c.body.is_root_device, c.body.is_read_only, c.status]), [
      ['/drives/runtime', '/runtime.img', false, true, 204],
      ['/drives/code', '/code.img', false, true, 204],
      ['/drives/volume_0', '/volume_0.img', false, false, 204],
      ['/drives/volume_1', '/volume_1.ephemeral.img', false, false, 204],
    ]);
    assert.equal(statSync(persistent).uid, NOBODY, 'the persistent volume (hard-linked) belongs to the jail uid');
    assert.ok(!existsSync(join(base, 'firecracker', 'aleph-0')), 'the jail is removed');
    assert.ok(!existsSync(join(cgroupRoot, 'firecracker', 'aleph-0')), 'the cgroup is removed');
  });

  function driverBase(binary: string, pool: NetworkPool): FirecrackerDriverOptions {
    return {
      stopGraceMs: 3000, binary, jailer: '', kernel, initramfs, runDir: join(dir, 'arm-run'), chrootBaseDir: join(dir, 'unused'),
      rootfs: '', cgroupRoot: '', uid: 0, gid: 0, apiTimeoutMs: 5000, extraBootArgs: '', pool,
    };
  }
});

/** GET over a raw connection from `localAddress`; the body, or '' when the peer closes without an answer. */
function rawGet(host: string, port: number, localAddress: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, localAddress }, () => socket.write(`GET ${path} HTTP/1.1\r\nhost: guest\r\nconnection: close\r\n\r\n`));
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString()));
    socket.on('close', () => resolve(text === '' ? '' : text.slice(text.indexOf('\r\n\r\n') + 4)));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? undefined : reject(err)));
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer within 5 s')));
  });
}

function vmProgram(code: string) {
  const program = makeProgram([]);
  program.launch = { kind: 'vm', code, entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false };
  return program;
}
