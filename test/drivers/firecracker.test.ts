// The Firecracker driver against a fake `firecracker` (test/fixtures/firecracker/):
// the fake serves the real API routes on the unix socket, checks each request body
// against Firecracker's API shapes, and runs the guest's program as a local process
// on the guest address, so the whole request path (node -> tap address -> program)
// works without /dev/kvm. A second test goes through a fake jailer: argument
// construction, chroot preparation (hard links, leftover removal) and cleanup.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AlephEdgeNode } from '../../src/app/index.js';
import { setLogLevel } from '../../src/common/index.js';
import { loadConfig } from '../../src/config/index.js';
import { FirecrackerDriver, waitForHttp } from '../../src/drivers/index.js';
import { FirecrackerApi, firecrackerConfig, jailerArgs } from '../../src/drivers/firecracker/index.js';
import { encodeCpio } from '../../src/drivers/image/index.js';
import { NetworkPool } from '../../src/drivers/net/index.js';
import { programHash, request, until, type TestNode } from '../helpers/node.js';
import { ROOT } from '../helpers/paths.js';
import { httpGet, makeProgram, nextSlot } from './helpers.js';
import { netnsSkipReason, processesWith, writeGuestProgram } from './qemu-guest.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');

const FAKE = join(ROOT, 'test/fixtures/firecracker/firecracker.mjs');
const FAKE_JAILER = join(ROOT, 'test/fixtures/firecracker/jailer.mjs');

describe('firecracker configuration', () => {
  it('builds the API bodies: boot source with initrd and guest network arguments, drives, machine, tap, vsock', () => {
    const config = firecrackerConfig({
      kernel: '/vmlinux', initrd: '/initrd', drives: [{ id: 'code', path: '/code.img', readOnly: true }], vcpus: 2, memoryMib: 256, tap: 'aetap5', slot: 5,
      guestIp: '172.16.0.22/30', gateway: '172.16.0.21', vsock: '/run/v.sock',
    });
    assert.deepEqual(config.bootSource, {
      kernel_image_path: '/vmlinux',
      initrd_path: '/initrd',
      boot_args: 'console=ttyS0 reboot=k panic=1 pci=off quiet aleph.ip=172.16.0.22/30 aleph.gw=172.16.0.21',
    });
    assert.deepEqual(config.drives, [{ drive_id: 'code', path_on_host: '/code.img', is_root_device: false, is_read_only: true }]);
    assert.deepEqual(config.machine, { vcpu_count: 2, mem_size_mib: 256, smt: false });
    assert.deepEqual(config.network, { iface_id: 'eth0', host_dev_name: 'aetap5', guest_mac: '06:00:ac:10:00:05' });
    assert.deepEqual(config.vsock, { guest_cid: 3, uds_path: '/run/v.sock' });

    // The shared layout (src/drivers/vm/layout.ts): drives in guest order, none the root device, no root= or init= argument.
    const withRuntime = firecrackerConfig({
      kernel: '/k', initrd: '/i', vcpus: 1, memoryMib: 128, tap: 't', slot: 0, guestIp: '10.0.0.2/30', gateway: '10.0.0.1',
      drives: [{ id: 'runtime', path: '/rt.squashfs', readOnly: true }, { id: 'code', path: '/c.img', readOnly: true }, { id: 'volume_0', path: '/v.img', readOnly: false }],
    });
    assert.deepEqual(withRuntime.drives.map((d) => [d.drive_id, d.is_root_device, d.is_read_only]), [['runtime', false, true], ['code', false, true], ['volume_0', false, false]]);
    assert.doesNotMatch(withRuntime.bootSource.boot_args, /root=|init=/);
  });

  it('builds the jailer command line with cgroup limits from the program', () => {
    assert.deepEqual(
      jailerArgs({ jailer: '/usr/bin/jailer', firecracker: '/usr/bin/firecracker', id: 'aleph-3', uid: 900, gid: 901, chrootBaseDir: '/srv/jailer', memoryMib: 128, vcpus: 2 }),
      [
        '--id', 'aleph-3', '--exec-file', '/usr/bin/firecracker', '--uid', '900', '--gid', '901', '--chroot-base-dir', '/srv/jailer',
        '--cgroup-version', '2', '--cgroup', `memory.max=${192 * 1024 * 1024}`, '--cgroup', 'cpu.max=200000 100000', '--resource-limit', 'no-file=2048',
        '--', '--api-sock', '/run/firecracker.socket', '--id', 'aleph-3',
      ],
    );
  });

  it('start-up checks name every missing piece', () => {
    assert.throws(
      () => new FirecrackerDriver({ stopGraceMs: 100, binary: '/nope/firecracker', jailer: 'no-such-jailer', kernel: '', initramfs: '', rootfs: '', runDir: '/tmp', chrootBaseDir: '/srv/jailer', uid: 0, gid: 0, apiTimeoutMs: 1000, pool: undefined }),
      (err: Error) => {
        for (const part of [
          /drivers\.firecracker\.binary: \/nope\/firecracker does not exist or is not executable/,
          /drivers\.firecracker\.jailer: no-such-jailer is not in PATH/,
          /drivers\.firecracker\.kernel is not set/,
          /set initramfs or rootfs/,
          /needs tap networking: a \[drivers\.network\] pool/,
        ]) assert.match(err.message, part);
        return true;
      },
    );
  });
});

describe('the fake firecracker checks request bodies like the real API', () => {
  it('refuses unknown fields, missing fields, wrong types and configuration after start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-fc-api-'));
    const socket = join(dir, 'api.sock');
    const fake = spawn(FAKE, ['--api-sock', socket, '--id', 'api-test'], { stdio: 'ignore' });
    try {
      const api = new FirecrackerApi(socket, 2000);
      await api.waitReady(new Promise(() => {}));
      await assert.rejects(api.put('/machine-config', { vcpu_count: 1, mem_size_mib: 128, bogus: true }), /HTTP 400: .*unknown field `bogus`/);
      await assert.rejects(api.put('/machine-config', { vcpu_count: 1 }), /missing field `mem_size_mib`/);
      await assert.rejects(api.put('/machine-config', { vcpu_count: '1', mem_size_mib: 128 }), /invalid value for `vcpu_count`/);
      await assert.rejects(api.put('/drives/a', { drive_id: 'b', path_on_host: FAKE, is_root_device: false }), /id from the path does not match/);
      await assert.rejects(api.put('/boot-source', { kernel_image_path: join(dir, 'missing') }), /No such file/);
      await assert.rejects(api.put('/actions', { action_type: 'InstanceStart' }), /missing boot source/);
      await assert.rejects(api.put('/actions', { action_type: 'Reboot' }), /invalid value for `action_type`/);
      await api.put('/machine-config', { vcpu_count: 2, mem_size_mib: 256, smt: false });
    } finally {
      fake.kill('SIGTERM');
      await new Promise((resolve) => fake.once('exit', resolve));
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

describe('firecracker driver with the fake firecracker', { skip: skip || false, timeout: 60_000 }, () => {
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
    kernel = join(dir, 'vmlinux');
    // An ELF header is all the fake looks at.
    await writeFile(kernel, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), Buffer.alloc(57)]));
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

      await until(() => processesWith(FAKE).length === 0, 10_000, 'the VM to stop after idle_timeout');
      await until(() => taps('aefc').length === 0, 5_000, 'the tap device to be removed');
      await until(async () => (await readdir(runDir)).length === 0, 5_000, 'the per-VM directory to be removed');
    } finally {
      await node.drain();
    }

    const calls = readFileSync(apiLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { method: string; path: string; body: Record<string, unknown>; status: number });
    const puts = calls.filter((c) => c.method === 'PUT');
    assert.deepEqual(puts.map((c) => `${c.path} ${c.status}`), [
      '/boot-source 204', '/machine-config 204', '/network-interfaces/eth0 204', '/actions 204', '/actions 204',
    ]);
    assert.match(String(puts[0]!.body.boot_args), /aleph\.ip=10\.213\.9\.2\/30 aleph\.gw=10\.213\.9\.1/);
    assert.deepEqual(puts[1]!.body, { vcpu_count: 2, mem_size_mib: 256, smt: false });
    assert.equal(puts[2]!.body.host_dev_name, 'aefc0');
    assert.deepEqual(puts.slice(3).map((c) => c.body.action_type), ['InstanceStart', 'SendCtrlAltDel']);
    assert.deepEqual(await readdir(stateDir), [], 'no lease records left');
  });

  it('runs under the jailer: chroot prepared (leftovers removed, files hard-linked) and removed on stop', async () => {
    const base = join(dir, 'jail');
    const stateDir = join(dir, 'jail-net');
    const jailLog = join(dir, 'jailer.log');
    const jailer = await wrapper(join(dir, 'bin-jailer'), 'jailer', FAKE_JAILER, { FAKE_JAILER_LOG: jailLog });
    const leftover = join(base, 'firecracker.mjs', 'aleph-0', 'root');
    await mkdir(leftover, { recursive: true });
    await writeFile(join(leftover, 'stale-from-a-crash'), '');
    const pool = new NetworkPool({ pool: '10.213.10.0/29', prefix: 30, tapPrefix: 'aefj', stateDir, outboundInterface: '' });
    const driver = new FirecrackerDriver({
      stopGraceMs: 3000, binary: FAKE, jailer, kernel, initramfs, rootfs: '', runDir: join(dir, 'unused'),
      chrootBaseDir: base, uid: 0, gid: 0, apiTimeoutMs: 5000, pool,
    });
    const program = makeProgram([]);
    program.launch = { kind: 'vm', code, entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false };
    const instance = await driver.start(program, nextSlot());
    try {
      assert.deepEqual(instance.endpoint, { kind: 'tcp', host: '10.213.10.2', port: 8080 });
      assert.ok(!existsSync(join(leftover, 'stale-from-a-crash')), 'the leftover chroot was removed before reuse');
      assert.equal(statSync(join(leftover, 'vmlinux')).ino, statSync(kernel).ino, 'the kernel is hard-linked into the chroot');
      assert.ok(existsSync(join(leftover, 'initrd')));
      const jailed = JSON.parse(readFileSync(jailLog, 'utf8').trim()) as { id: string; 'exec-file': string; cgroup: string[]; root: string; passed: string[] };
      assert.equal(jailed.id, 'aleph-0');
      assert.equal(jailed['exec-file'], FAKE);
      assert.deepEqual(jailed.cgroup, [`memory.max=${(128 + 64) * 1024 * 1024}`, 'cpu.max=100000 100000']);
      assert.deepEqual(jailed.passed, ['--api-sock', '/run/firecracker.socket', '--id', 'aleph-0']);
      await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 10_000 });
      assert.equal((await httpGet(instance.endpoint, '/index.html')).body, 'hello from the guest\n');
    } finally {
      await instance.stop();
    }
    const exit = await instance.exited;
    assert.equal(exit.requested, true);
    assert.ok(!existsSync(join(base, 'firecracker.mjs', 'aleph-0')), 'the chroot is removed on stop');
    assert.deepEqual(taps('aefj'), []);
    assert.deepEqual(processesWith(FAKE), []);
  });
});
