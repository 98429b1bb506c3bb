// The fakes in test/fixtures/firecracker/ must refuse what Firecracker 1.16 and
// its jailer refuse (and accept what they accept), or the driver tests prove
// nothing. One test per rule, each showing the fake refusing a wrong request.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FirecrackerApi } from '../../src/drivers/firecracker/index.js';
import { encodeCpio } from '../../src/drivers/image/index.js';
import { ROOT } from '../helpers/paths.js';
import { fakeKernel } from './firecracker-helpers.js';
import { netnsSkipReason, writeGuestProgram } from './qemu-guest.js';

const FAKE = join(ROOT, 'test/fixtures/firecracker/firecracker.mjs');
const FAKE_JAILER = join(ROOT, 'test/fixtures/firecracker/jailer.mjs');
const NOBODY = 65534;

interface Fake {
  api: FirecrackerApi;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startFake(dir: string, name: string, env: Record<string, string> = {}, uid?: number): Promise<Fake> {
  let socket = join(dir, `${name}.sock`);
  let args = ['--api-sock', socket, '--id', name];
  if (uid !== undefined) {
    // What the jailer leaves for an unprivileged firecracker: /run and /dev/net/tun owned by its uid.
    const jail = join(dir, `jail-${name}`);
    await mkdir(join(jail, 'run'), { recursive: true });
    await mkdir(join(jail, 'dev/net'), { recursive: true });
    execFileSync('mknod', ['-m', '600', join(jail, 'dev/net/tun'), 'c', '10', '200']);
    for (const p of ['run', 'dev/net/tun']) chownSync(join(jail, p), uid, uid);
    env = { ...env, FAKE_CHROOT: jail };
    args = ['--api-sock', `/run/${name}.sock`, '--id', name];
    socket = join(jail, 'run', `${name}.sock`);
  }
  const child = spawn(process.execPath, [FAKE, ...args], { stdio: 'ignore', env: { ...process.env, ...env }, uid, gid: uid });
  const api = new FirecrackerApi(socket, 5000);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await api.waitReady(exited);
  return {
    api,
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      await rm(socket, { force: true });
    },
  };
}

function runFake(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [FAKE, ...args], { encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, stderr: r.stderr };
}

describe('the fake firecracker command line is parsed like the real one', () => {
  it('refuses a repeated argument (the jailer already passes --id)', () => {
    const r = runFake(['--id', 'a', '--start-time-us', '1', '--api-sock', '/nonexistent/x.sock', '--id', 'a']);
    assert.equal(r.status, 153);
    assert.match(r.stderr, /Arguments parsing error: The argument 'id' was provided more than once\./);
  });
  it('refuses an unknown argument, a missing value and an invalid instance id', () => {
    assert.match(runFake(['--bogus']).stderr, /Found argument 'bogus' which wasn't expected/);
    assert.match(runFake(['--api-sock', '--id', 'x']).stderr, /The argument 'api-sock' requires a value, but none was supplied/);
    const r = runFake(['--id', 'aleph_1', '--api-sock', '/nonexistent/x.sock']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /Invalid instance ID/);
  });
});

describe('the fake firecracker API checks requests like Firecracker 1.16', () => {
  let dir: string;
  let fake: Fake;
  let kernel: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-fcfake-'));
    kernel = join(dir, 'vmlinux');
    await writeFile(kernel, fakeKernel('elf'));
    fake = await startFake(dir, 'api-test');
  });
  after(async () => {
    await fake.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const put = (path: string, body: unknown) => fake.api.put(path, body);

  it('answers with {"fault_message"} and 400', async () => {
    await assert.rejects(fake.api.call('PUT', '/nope', {}), /HTTP 400: Invalid request method and\/or path: PUT nope\./);
  });
  it('refuses unknown fields', async () => {
    await assert.rejects(put('/machine-config', { vcpu_count: 1, mem_size_mib: 128, bogus: true }), /deserializing the json body of a request: unknown field `bogus`/);
    await assert.rejects(put('/boot-source', { kernel_image_path: kernel, root: '/dev/vda' }), /unknown field `root`/);
  });
  it('refuses missing required fields', async () => {
    await assert.rejects(put('/machine-config', { vcpu_count: 1 }), /missing field `mem_size_mib`/);
    await assert.rejects(put('/drives/code', { drive_id: 'code', path_on_host: kernel, is_read_only: true }), /missing field `is_root_device`/);
    await assert.rejects(put('/network-interfaces/eth0', { iface_id: 'eth0' }), /missing field `host_dev_name`/);
  });
  it('refuses wrong types and values out of the integer type', async () => {
    await assert.rejects(put('/machine-config', { vcpu_count: '1', mem_size_mib: 128 }), /invalid type: string "1", expected u8/);
    await assert.rejects(put('/machine-config', { vcpu_count: 300, mem_size_mib: 128 }), /invalid value: integer `300`, expected u8/);
    await assert.rejects(put('/actions', { action_type: 'Reboot' }), /unknown variant `Reboot`/);
    await assert.rejects(put('/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 't', guest_mac: 'zz' }), /expected a MAC address/);
  });
  it('enforces the machine-config ranges: vCPUs 1-32, memory > 0', async () => {
    await assert.rejects(put('/machine-config', { vcpu_count: 0, mem_size_mib: 128 }), /The number of vCPUs must be greater than 0, less than 32/);
    await assert.rejects(put('/machine-config', { vcpu_count: 33, mem_size_mib: 128 }), /The number of vCPUs must be greater than 0/);
    await assert.rejects(put('/machine-config', { vcpu_count: 3, mem_size_mib: 128, smt: true }), /must be 1 or an even number if SMT is enabled/);
    await assert.rejects(put('/machine-config', { vcpu_count: 1, mem_size_mib: 0 }), /The memory size \(MiB\) is either 0/);
    await put('/machine-config', { vcpu_count: 32, mem_size_mib: 1 });
  });
  it('limits boot_args to the 2048-byte command line (NUL included)', async () => {
    await assert.rejects(put('/boot-source', { kernel_image_path: kernel, boot_args: 'x'.repeat(2048) }), /The kernel command line is invalid: Command line string too large/);
    await put('/boot-source', { kernel_image_path: kernel, boot_args: 'x'.repeat(2047) });
  });
  it('checks resource ids in the path: letters, digits and _, equal to the body id', async () => {
    await assert.rejects(put('/drives/code-1', { drive_id: 'code-1', path_on_host: kernel, is_root_device: false }), /API Resource IDs can only contain alphanumeric characters and underscores/);
    await assert.rejects(put('/drives/a', { drive_id: 'b', path_on_host: kernel, is_root_device: false }), /The id from the path does not match the id from the body!/);
    await assert.rejects(put('/network-interfaces/eth0', { iface_id: 'eth1', host_dev_name: 'tap0' }), /The id from the path \[eth0\] does not match the id from the body \[eth1\]!/);
    await assert.rejects(fake.api.call('PUT', '/drives', { drive_id: 'a', path_on_host: kernel, is_root_device: false }), /The ID cannot be empty/);
  });
  it('opens the files it is given', async () => {
    await assert.rejects(put('/boot-source', { kernel_image_path: join(dir, 'missing') }), /The kernel file cannot be opened: No such file/);
    await assert.rejects(put('/drives/data', { drive_id: 'data', path_on_host: join(dir, 'missing'), is_root_device: false, is_read_only: true }), /Unable to create the virtio block device/);
  });
  it('refuses a second root drive', async () => {
    await put('/drives/one', { drive_id: 'one', path_on_host: kernel, is_root_device: true, is_read_only: true });
    await assert.rejects(put('/drives/two', { drive_id: 'two', path_on_host: kernel, is_root_device: true, is_read_only: true }), /A root block device already exists!/);
  });
  it('refuses an empty PUT and a GET with a body, and SendCtrlAltDel before InstanceStart', async () => {
    await assert.rejects(fake.api.call('PUT', '/machine-config'), /Empty PUT request\./);
    await assert.rejects(fake.api.call('GET', '/machine-config', {}), /GET request cannot have a body\./);
    await assert.rejects(put('/actions', { action_type: 'SendCtrlAltDel' }), /not supported before starting the microVM/);
    // The 2047-byte boot_args above fit alone, not with the virtio_mmio entry Firecracker appends for the drive.
    await assert.rejects(put('/actions', { action_type: 'InstanceStart' }), /Start microvm error: Kernel command line error: Command line string too large/);
  });
  it('refuses InstanceStart without a boot source', async () => {
    const other = await startFake(dir, 'no-boot-source');
    try {
      await assert.rejects(other.api.put('/actions', { action_type: 'InstanceStart' }), /Start microvm error: Cannot start microvm without kernel configuration\./);
    } finally {
      await other.stop();
    }
  });
  it('accepts what the real one accepts: GET /version, GET /vm/config, /logger, /metrics', async () => {
    assert.deepEqual(await fake.api.call('GET', '/version'), { firecracker_version: '1.16.1' });
    const logPath = join(dir, 'fc.log');
    const metricsPath = join(dir, 'fc.metrics');
    await writeFile(logPath, '');
    await writeFile(metricsPath, '');
    await put('/logger', { log_path: logPath, level: 'Debug', show_level: true });
    await put('/metrics', { metrics_path: metricsPath });
    await assert.rejects(put('/metrics', { metrics_path: metricsPath }), /Reinitialization of metrics not allowed/);
    await put('/actions', { action_type: 'FlushMetrics' });
    const config = (await fake.api.call('GET', '/vm/config')) as Record<string, unknown>;
    assert.deepEqual(config.logger, { log_path: logPath, level: 'debug', show_level: true });
    assert.ok('machine-config' in config && 'drives' in config && 'boot-source' in config);
  });
});

describe('the fake firecracker kernel formats per architecture', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-fcarch-'));
    for (const f of ['elf', 'bzimage', 'arm64'] as const) await writeFile(join(dir, f), fakeKernel(f));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('x86_64 boots an ELF vmlinux or a bzImage, not an arm64 Image', async () => {
    const fake = await startFake(dir, 'x86');
    try {
      await fake.api.put('/boot-source', { kernel_image_path: join(dir, 'arm64') });
      await assert.rejects(fake.api.put('/actions', { action_type: 'InstanceStart' }), /invalid kernel image: .*bzImage/);
      await fake.api.put('/boot-source', { kernel_image_path: join(dir, 'bzimage') });
      // Past the kernel check, the guest emulation wants a network interface.
      await assert.rejects(fake.api.put('/actions', { action_type: 'InstanceStart' }), /needs one network interface/);
    } finally {
      await fake.stop();
    }
  });
  it('aarch64 boots a PE Image only and refuses SendCtrlAltDel', async () => {
    const fake = await startFake(dir, 'arm', { FAKE_FIRECRACKER_ARCH: 'aarch64' });
    try {
      await assert.rejects(fake.api.put('/actions', { action_type: 'SendCtrlAltDel' }), /SendCtrlAltDel does not supported on aarch64/);
      await fake.api.put('/boot-source', { kernel_image_path: join(dir, 'elf') });
      await assert.rejects(fake.api.put('/actions', { action_type: 'InstanceStart' }), /Invalid Image magic number/);
      await fake.api.put('/boot-source', { kernel_image_path: join(dir, 'arm64') });
      await assert.rejects(fake.api.put('/actions', { action_type: 'InstanceStart' }), /needs one network interface/);
    } finally {
      await fake.stop();
    }
  });
});

const skip = netnsSkipReason();

describe('the fake firecracker with a tap and a booted guest', { skip: skip || false, timeout: 60_000 }, () => {
  let dir: string;
  let initrd: string;
  let kernel: string;
  const tap = 'aefk0';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-fcboot-'));
    await chmod(dir, 0o755); // the fake runs as nobody in one test
    kernel = join(dir, 'vmlinux');
    await writeFile(kernel, fakeKernel('elf'));
    const code = await writeGuestProgram(dir);
    initrd = join(dir, 'initrd');
    const files = [{ type: 'file' as const, path: 'app/start', mode: 0o755, data: readFileSync(join(code, 'start')) }, { type: 'file' as const, path: 'app/www/index.html', mode: 0o644, data: Buffer.from('hi\n') }];
    await writeFile(initrd, encodeCpio(files));
    spawnSync('ip', ['link', 'del', tap]);
  });
  after(async () => {
    spawnSync('ip', ['link', 'del', tap]);
    await rm(dir, { recursive: true, force: true });
  });

  it('opens the tap as its own user, as the kernel allows: not a tap owned by another user', async () => {
    spawnSync('ip', ['link', 'del', tap]);
    execFileSync('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap', 'user', '0', 'group', '0']);
    const fake = await startFake(dir, 'nobody', {}, NOBODY);
    try {
      await assert.rejects(
        fake.api.put('/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: tap }),
        /Could not create the network device: Open tap device failed: Error while creating ifreq structure: Operation not permitted \(os error 1\)\. Invalid TUN\/TAP Backend provided by aefk0/,
      );
      execFileSync('ip', ['link', 'del', tap]);
      execFileSync('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap', 'user', String(NOBODY), 'group', String(NOBODY)]);
      await fake.api.put('/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: tap, mtu: 1500 });
      await assert.rejects(fake.api.put('/network-interfaces/eth1', { iface_id: 'eth1', host_dev_name: 'aefk-none' }), /Open tap device failed/);
    } finally {
      await fake.stop();
      spawnSync('ip', ['link', 'del', tap]);
    }
  });

  it('InstanceStart once; pre-boot-only resources refused after it; Firecracker appends its virtio_mmio entries', async () => {
    spawnSync('ip', ['link', 'del', tap]);
    execFileSync('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    execFileSync('ip', ['addr', 'add', '10.213.12.1/30', 'dev', tap]);
    execFileSync('ip', ['link', 'set', tap, 'up']);
    const log = join(dir, 'boot.log');
    const fake = await startFake(dir, 'boot', { FAKE_FIRECRACKER_LOG: log });
    try {
      await fake.api.put('/boot-source', { kernel_image_path: kernel, initrd_path: initrd, boot_args: 'console=ttyS0 aleph.ip=10.213.12.2/30' });
      await fake.api.put('/drives/code', { drive_id: 'code', path_on_host: kernel, is_root_device: false, is_read_only: true });
      await fake.api.put('/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: tap });
      await fake.api.put('/actions', { action_type: 'InstanceStart' });
      assert.deepEqual(await fake.api.call('GET', '/'), { id: 'boot', state: 'Running', vmm_version: '1.16.1', app_name: 'Firecracker' });
      await assert.rejects(fake.api.put('/actions', { action_type: 'InstanceStart' }), /not supported after starting the microVM/);
      for (const [path, body] of [
        ['/boot-source', { kernel_image_path: kernel }],
        ['/drives/more', { drive_id: 'more', path_on_host: kernel, is_root_device: false, is_read_only: true }],
        ['/machine-config', { vcpu_count: 1, mem_size_mib: 128 }],
        ['/network-interfaces/eth1', { iface_id: 'eth1', host_dev_name: tap }],
        ['/vsock', { guest_cid: 3, uds_path: join(dir, 'v.sock') }],
        ['/logger', { level: 'Info' }],
      ] as const) {
        await assert.rejects(fake.api.put(path, body), /HTTP 400: The requested operation is not supported after starting the microVM\./, path);
      }
      const cmdline = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { cmdline?: string }).find((e) => e.cmdline)?.cmdline;
      assert.equal(cmdline, 'console=ttyS0 aleph.ip=10.213.12.2/30 virtio_mmio.device=4K@0xc0001000:5 virtio_mmio.device=4K@0xc0002000:6');
      await fake.api.put('/actions', { action_type: 'SendCtrlAltDel' });
      await new Promise((resolve) => fake.child.once('exit', resolve));
      assert.equal(fake.child.exitCode, 0);
    } finally {
      await fake.stop();
      spawnSync('ip', ['link', 'del', tap]);
    }
  });
});

describe('the fake jailer is as strict as the real one', { skip: skip || false }, () => {
  let dir: string;
  let base: string;
  let mounts: string;
  let exec: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-fcjail-'));
    await chmod(dir, 0o755); // the jailed exec file runs as nobody, reached through this path
    base = join(dir, 'jail');
    await mkdir(base);
    const cgroupRoot = join(dir, 'cgroup');
    await mkdir(cgroupRoot);
    await writeFile(join(cgroupRoot, 'cgroup.controllers'), 'cpu memory pids\n');
    mounts = join(dir, 'mounts');
    await writeFile(mounts, `cgroup2 ${cgroupRoot} cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n`);
    // An exec file that prints its argv and environment, behind a release-style symlink.
    const real = join(dir, 'firecracker-v1.16.1-x86_64');
    await writeFile(real, '#!/bin/sh\necho "argv: $*"\necho "uid: $(/usr/bin/id -u) env: $(/usr/bin/env | /usr/bin/sort | /usr/bin/tr "\\n" " ")"\n', { mode: 0o755 });
    exec = join(dir, 'firecracker');
    await symlink(real, exec);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const jailer = (args: string[]) => spawnSync(process.execPath, [FAKE_JAILER, ...args], { encoding: 'utf8', env: { ...process.env, FAKE_JAILER_PROC_MOUNTS: mounts }, timeout: 10_000 });
  const common = (id: string) => ['--id', id, '--exec-file', exec, '--uid', String(NOBODY), '--gid', String(NOBODY), '--chroot-base-dir', base, '--cgroup-version', '2'];

  it('refuses a repeated argument', () => {
    const r = jailer([...common('a'), '--uid', '1']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /Failed to parse arguments: The argument 'uid' was provided more than once\./);
  });
  it('requires --id, --exec-file, --uid and --gid, and checks the id', () => {
    assert.match(jailer(['--id', 'a', '--exec-file', exec, '--uid', '1']).stderr, /Argument 'gid' required, but not found/);
    assert.match(jailer(common('aleph_1')).stderr, /Invalid instance ID: Invalid char \(_\) at position 5/);
  });
  it('takes --cgroup as exactly one "=" with a value, for an available controller', () => {
    assert.match(jailer([...common('c1'), '--cgroup', 'cpu.max=1=2']).stderr, /Invalid format for cgroups: cpu\.max=1=2/);
    assert.match(jailer([...common('c2'), '--cgroup', 'memory.max=']).stderr, /Invalid format for cgroups/);
    assert.match(jailer([...common('c3'), '--cgroup', '../memory.max=1']).stderr, /Cgroup invalid file/);
    assert.match(jailer([...common('c4'), '--cgroup', 'hugetlb.max=1']).stderr, /Controller hugetlb is unavailable/);
    assert.match(jailer([...common('c5'), '--resource-limit', 'no-file']).stderr, /Invalid format for resources limits/);
  });
  it('names the jail after the resolved exec file, makes it 0700 for uid:gid and runs the copy with --id first', () => {
    const r = jailer([...common('vm1'), '--cgroup', 'memory.max=1000', '--', '--api-sock', '/run/firecracker.socket']);
    assert.equal(r.status, 0, r.stderr);
    const root = join(base, 'firecracker-v1.16.1-x86_64', 'vm1', 'root');
    assert.ok(!existsSync(join(base, 'firecracker')), 'no jail under the symlink name');
    for (const d of ['', 'dev', 'dev/net', 'run']) {
      const st = statSync(join(root, d));
      assert.deepEqual([st.mode & 0o777, st.uid, st.gid], [0o700, NOBODY, NOBODY], `/${d}`);
    }
    const tun = lstatSync(join(root, 'dev/net/tun'));
    assert.ok(tun.isCharacterDevice());
    assert.deepEqual([tun.mode & 0o777, tun.uid], [0o600, NOBODY]);
    assert.equal(statSync(join(root, 'firecracker-v1.16.1-x86_64')).uid, NOBODY, 'the exec file is copied in, owned by the jail uid');
    assert.ok(existsSync(join(dir, 'cgroup', 'firecracker-v1.16.1-x86_64', 'vm1')), 'the cgroup <root>/<exec name>/<id>');
    assert.match(r.stdout, /^argv: --id vm1 --start-time-us \d+ --start-time-cpu-us \d+ --parent-cpu-time-us \d+ --api-sock \/run\/firecracker\.socket$/m);
    const env = /^uid: (\d+) env: (.*)$/m.exec(r.stdout);
    assert.equal(env?.[1], String(NOBODY), r.stdout);
    // A cleared environment: the fake's FAKE_CHROOT and PATH, what sh sets itself, the IPC channel.
    const names = env![2]!.trim().split(' ').map((v) => v.split('=')[0]).filter((n) => !['PWD', 'SHLVL', 'OLDPWD', '_'].includes(n!) && !n!.startsWith('NODE_CHANNEL'));
    assert.deepEqual(names, ['FAKE_CHROOT', 'PATH'], r.stdout);
    // A second start with the same id finds the device nodes already there, like the real jailer.
    const again = jailer(common('vm1'));
    assert.match(again.stderr, /Failed to create \/dev\/net\/tun via mknod inside the jail/);
    chmodSync(root, 0o700);
  });
});
