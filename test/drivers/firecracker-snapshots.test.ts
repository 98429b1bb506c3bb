// Firecracker snapshots without KVM: the fake firecracker (test/fixtures/firecracker/)
// checks the snapshot requests as Firecracker 1.16.1 does (bodies, the pre-boot and
// Paused states, a failed load ending the process), and the driver saves a ready VM
// and restores it in a fresh Firecracker on another tap, where the guest agent moves
// the guest to this life's address. What only a real KVM guest shows (the memory
// image, the clock and entropy fix-up inside the guest) is in docs/snapshots.md.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger, setLogLevel } from '../../src/common/index.js';
import { FirecrackerDriver, waitForHttp, type Instance } from '../../src/drivers/index.js';
import type { Program } from '../../src/programs/index.js';
import { FirecrackerApi, netCommand, snapshotLoadBody } from '../../src/drivers/firecracker/index.js';
import { encodeCpio } from '../../src/drivers/image/index.js';
import { NetworkPool } from '../../src/drivers/net/index.js';
import { SnapshotStore } from '../../src/drivers/vm/index.js';
import { until } from '../helpers/node.js';
import { ROOT } from '../helpers/paths.js';
import { fakeKernel, loggingFakeFirecracker } from './firecracker-helpers.js';
import { httpGet, makeProgram, nextSlot } from './helpers.js';
import { netnsSkipReason, writeGuestProgram } from './qemu-guest.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');

const FAKE = join(ROOT, 'test/fixtures/firecracker/firecracker.mjs');
const PRE_BOOT = /HTTP 400: The requested operation is not supported before starting the microVM\./;

interface Fake {
  api: FirecrackerApi;
  child: ChildProcess;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

async function startFake(dir: string, name: string, env: Record<string, string> = {}): Promise<Fake> {
  const socket = join(dir, `${name}.sock`);
  const child = spawn(process.execPath, [FAKE, '--api-sock', socket, '--id', name], { stdio: 'ignore', env: { ...process.env, ...env } });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const api = new FirecrackerApi(socket, 5000);
  await api.waitReady(exited);
  return {
    api,
    child,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      await rm(socket, { force: true });
    },
  };
}

/** Firecracker's host side of the vsock: CONNECT, then lines; resolves every answer line. */
function vsockSession(uds: string, port: number, lines: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(uds);
    let text = '';
    socket.on('connect', () => socket.write(`CONNECT ${port}\n${lines.map((l) => `${l}\n`).join('')}`));
    socket.on('data', (chunk) => {
      text += chunk.toString();
      const got = text.split('\n').filter(Boolean);
      if (got.length === lines.length + 1) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(text.split('\n').filter(Boolean)));
  });
}

describe('the fake firecracker checks snapshot requests like Firecracker 1.16', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-aedr-fcsnap-'));
    await writeFile(join(dir, 'vmlinux'), fakeKernel('elf'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses bad bodies (unknown, missing and exclusive fields) and pause or create before boot', async () => {
    const fake = await startFake(dir, 'bodies');
    try {
      const state = join(dir, 'none.state');
      const memory = { backend_type: 'File', backend_path: join(dir, 'none.mem') };
      await assert.rejects(fake.api.call('PATCH', '/vm', { state: 'Paused' }), PRE_BOOT);
      await assert.rejects(fake.api.call('PATCH', '/vm', { state: 'Stopped' }), /unknown variant `Stopped`, expected one of `Paused`, `Resumed`/);
      await assert.rejects(fake.api.put('/snapshot/create', { snapshot_type: 'Full', snapshot_path: state, mem_file_path: join(dir, 'm') }), PRE_BOOT);
      await assert.rejects(fake.api.put('/snapshot/create', { snapshot_path: state }), /HTTP 400: .*missing field `mem_file_path`/);
      await assert.rejects(fake.api.put('/snapshot/create', { snapshot_path: state, mem_file_path: 'm', version: '1' }), /unknown field `version`/);
      await assert.rejects(fake.api.put('/snapshot/load', { snapshot_path: state, mem_backend: memory, resume: true }), /unknown field `resume`/);
      await assert.rejects(fake.api.put('/snapshot/load', { mem_backend: memory }), /missing field `snapshot_path`/);
      await assert.rejects(fake.api.put('/snapshot/load', { snapshot_path: state }), /missing field: either `mem_backend` or `mem_file_path` is required/);
      await assert.rejects(fake.api.put('/snapshot/load', { snapshot_path: state, mem_backend: memory, mem_file_path: 'm' }), /too many fields: either `mem_backend` or `mem_file_path` exclusively is required/);
      await assert.rejects(fake.api.put('/snapshot/load', { snapshot_path: state, mem_backend: { backend_type: 'Disk', backend_path: 'm' } }), /unknown variant `Disk`, expected one of `File`, `Uffd`/);
      await assert.rejects(fake.api.put('/snapshot/load', { snapshot_path: state, mem_backend: memory, network_overrides: [{ iface_id: 'eth0' }] }), /missing field `host_dev_name`/);
      await assert.rejects(fake.api.put('/snapshot/undo', { snapshot_path: state }), /Invalid request method and\/or path: PUT \/snapshot\/undo\./);
      // None of these was fatal, and none configured anything: the process still takes a load.
      assert.deepEqual(await fake.api.call('GET', '/'), { id: 'bodies', state: 'Not started', vmm_version: '1.16.1', app_name: 'Firecracker' });
    } finally {
      await fake.stop();
    }
  });

  it('refuses a load after any boot-specific resource, and the process lives on', async () => {
    const fake = await startFake(dir, 'bootpath');
    try {
      // Logger and metrics are not boot resources: a load is still allowed after them (it then fails on the path).
      await fake.api.put('/logger', { level: 'Info' });
      await fake.api.put('/machine-config', { vcpu_count: 1, mem_size_mib: 128 });
      await assert.rejects(
        fake.api.put('/snapshot/load', { snapshot_path: join(dir, 'x'), mem_backend: { backend_type: 'File', backend_path: join(dir, 'y') } }),
        /PUT \/snapshot\/load: HTTP 400: Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources\.$/,
      );
      assert.equal((await fake.api.call('GET', '/') as { state: string }).state, 'Not started');
    } finally {
      await fake.stop();
    }
  });

  it('answers a load of a missing file with the real fault message, then exits (GenericError)', async () => {
    const fake = await startFake(dir, 'missing');
    try {
      await assert.rejects(
        fake.api.put('/snapshot/load', { snapshot_path: join(dir, 'no.state'), mem_backend: { backend_type: 'File', backend_path: join(dir, 'no.mem') }, resume_vm: true }),
        /HTTP 400: Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state from file: Failed to open snapshot file: No such file or directory \(os error 2\)$/,
      );
      assert.equal(await fake.exited, 1);
    } finally {
      await fake.stop();
    }
  });

  it('the load body the driver sends is one the fake accepts field by field', () => {
    const body = snapshotLoadBody({ state: '/s/state', files: { state: '/s/state', memory: '/s/memory' } }, 'aedr3', '/run/v.sock');
    assert.deepEqual(body, {
      snapshot_path: '/s/state', mem_backend: { backend_type: 'File', backend_path: '/s/memory' }, resume_vm: true,
      network_overrides: [{ iface_id: 'eth0', host_dev_name: 'aedr3' }], vsock_override: { uds_path: '/run/v.sock' },
    });
    assert.throws(() => snapshotLoadBody({ state: '/s/state', files: { state: '/s/state' } }, 'aedr3', '/v'), /no memory file/);
    assert.equal(netCommand({ slot: 1, tap: 'aedr1', hostIp: '10.0.0.5', guestIp: '10.0.0.6', prefix: 30 } as never), 'net 10.0.0.6/30 10.0.0.5');
  });
});

const skip = netnsSkipReason();

describe('Firecracker snapshots through the driver (fake firecracker)', { skip: skip || false, timeout: 120_000 }, () => {
  let dir: string;
  let kernel: string;
  let initramfs: string;
  let code: string;
  let apiLog: string;
  let binary: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-aedr-fcsnapd-'));
    await chmod(dir, 0o755);
    kernel = join(dir, 'vmlinux');
    await writeFile(kernel, fakeKernel('elf'));
    // The base initramfs has the guest agent (the fake answers for it on the vsock when the file is there).
    initramfs = join(dir, 'base.cpio');
    await writeFile(initramfs, encodeCpio([
      { type: 'file', path: 'init', mode: 0o755, data: Buffer.from('#!/bin/sh\n') },
      { type: 'file', path: 'bin/aleph-agent', mode: 0o755, data: Buffer.from('agent\n') },
    ]));
    code = await writeGuestProgram(dir);
    ({ binary, apiLog } = await loggingFakeFirecracker(dir));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A driver with its own pool, cache and run directory (`name` tells them apart). */
  function snapshotDriver(name: string, cidr: string, tapPrefix: string): { driver: FirecrackerDriver; pool: NetworkPool; store: SnapshotStore; runDir: string; program: Program } {
    const pool = new NetworkPool({ pool: cidr, prefix: 30, tapPrefix, stateDir: join(dir, `${name}-net`), outboundInterface: '' });
    const store = new SnapshotStore(join(dir, `${name}-snapshots`), 1024 * 1024 * 1024, createLogger('test.snapshots'));
    const runDir = join(dir, `${name}-run`);
    const driver = new FirecrackerDriver({
      stopGraceMs: 3000, binary, jailer: '', kernel, initramfs, runDir, chrootBaseDir: join(dir, 'unused'),
      rootfs: '', cgroupRoot: '', uid: 0, gid: 0, apiTimeoutMs: 5000, extraBootArgs: '', pool, snapshots: store,
    });
    const program = makeProgram([]);
    program.launch = { kind: 'vm', code, entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false };
    return { driver, pool, store, runDir, program };
  }

  const calls = () => (existsSync(apiLog) ? readFileSync(apiLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { method?: string; path?: string; body?: Record<string, unknown>; status?: number; restored?: string; nets?: string[] }) : []);

  it('saves a ready VM (pause, create, resume), restores it on another tap and address, and boots when a saved state does not load', async () => {
    const { driver, pool, store, runDir, program } = snapshotDriver('save', '10.213.77.0/28', 'aedr');
    program.memoryMib = 64;
    const serve = async (instance: Instance) => {
      await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 15_000 });
      return (await httpGet(instance.endpoint, '/index.html')).body;
    };

    // First life: a boot; once ready the node saves it.
    const first = await driver.start(program, nextSlot());
    try {
      assert.equal(await serve(first), 'hello from the guest\n');
      first.ready?.();
      await until(async () => (await store.list()).length === 1, 15_000, 'the snapshot to be saved');
      // It serves on after the save (resumed).
      assert.equal(await serve(first), 'hello from the guest\n');
    } finally {
      await first.stop();
    }
    const [entry] = await store.list();
    const files = await readdir(join(dir, 'save-snapshots', entry!.key));
    assert.deepEqual(files.sort(), ['memory', 'meta.json', 'state']);
    assert.equal(statSync(join(dir, 'save-snapshots', entry!.key, 'memory')).size, 64 * 1024 * 1024, 'a Full snapshot: all the guest memory');
    const saveCalls = calls().filter((c) => c.path === '/vm' || c.path === '/snapshot/create');
    assert.deepEqual(saveCalls.map((c) => `${c.method} ${c.path} ${c.status}`), ['PATCH /vm 204', 'PUT /snapshot/create 204', 'PATCH /vm 204']);
    assert.deepEqual(saveCalls.map((c) => c.body?.state ?? c.body?.snapshot_type), ['Paused', 'Full', 'Resumed']);

    // Second life, with the first slot taken: another tap and address, restored not booted.
    const holder = await pool.acquire('aedr-holder', {});
    let second: Instance | undefined;
    try {
      const before = calls().length;
      second = await driver.start(program, nextSlot());
      assert.equal((second as { restored?: boolean }).restored, true);
      const lifeCalls = calls().slice(before);
      assert.deepEqual(lifeCalls.filter((c) => c.method && c.method !== 'GET').map((c) => `${c.method} ${c.path} ${c.status}`), ['PUT /snapshot/load 204'], 'a load only: no boot-source, no InstanceStart');
      const load = lifeCalls.find((c) => c.path === '/snapshot/load')!;
      const tap = (load.body!.network_overrides as Array<{ host_dev_name: string }>)[0]!.host_dev_name;
      assert.notEqual(tap, 'aedr0');
      assert.match(tap, /^aedr\d+$/);
      assert.equal(second.endpoint.kind === 'tcp' && second.endpoint.host === '10.213.77.2', false, 'not the first life\'s address');
      // The guest agent moved the guest to this life's address: it answers there.
      assert.equal(await serve(second), 'hello from the guest\n');
    } finally {
      await second?.stop();
      await pool.release(holder);
    }

    // A saved state Firecracker cannot load (checksums right, content from another arch): one warning, then a boot.
    const stateFile = join(dir, 'save-snapshots', entry!.key, 'state');
    const state = JSON.parse(await readFile(stateFile, 'utf8')) as Record<string, unknown>;
    const damaged = JSON.stringify({ ...state, arch: 'aarch64' });
    await writeFile(stateFile, damaged);
    const metaFile = join(dir, 'save-snapshots', entry!.key, 'meta.json');
    const meta = JSON.parse(await readFile(metaFile, 'utf8')) as Record<string, unknown>;
    await writeFile(metaFile, JSON.stringify({ ...meta, size: Buffer.byteLength(damaged), sha256: createHash('sha256').update(damaged).digest('hex') }));
    const before = calls().length;
    const third = await driver.start(program, nextSlot());
    try {
      assert.notEqual((third as { restored?: boolean }).restored, true);
      assert.equal(await serve(third), 'hello from the guest\n');
      const lifeCalls = calls().slice(before).filter((c) => c.method === 'PUT');
      assert.match(String(lifeCalls[0]!.path), /^\/snapshot\/load$/);
      assert.equal(lifeCalls[0]!.status, 400);
      assert.deepEqual(lifeCalls.slice(1).map((c) => c.path), ['/boot-source', '/machine-config', '/network-interfaces/eth0', '/vsock', '/actions']);
      assert.deepEqual(await store.list(), [], 'the entry that did not load is gone');
    } finally {
      await third.stop();
    }
    await until(async () => (await readdir(runDir)).length === 0, 5_000, 'the per-VM directories to be removed');
  });

  it('never snapshots a VM with the guest API or a writable volume (per-life state)', async () => {
    const { driver, store, program } = snapshotDriver('never', '10.213.77.16/28', 'aedq');
    const instance = await driver.start(program, { ...nextSlot(), guestApi: { socket: join(dir, 'guest-api.sock') } });
    try {
      await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 15_000 });
      assert.equal(instance.ready, undefined, 'no save hook');
    } finally {
      await instance.stop();
    }
    assert.deepEqual(await store.list(), []);
  });
});

describe('the fake firecracker restores a snapshot on another tap and answers for the guest agent on the vsock', { skip: skip || false, timeout: 60_000 }, () => {
  let dir: string;
  const taps = ['aedr8', 'aedr9'];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-aedr-fcsnapf-'));
    for (const [i, tap] of taps.entries()) {
      spawnSync('ip', ['link', 'del', tap]);
      execFileSync('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
      execFileSync('ip', ['addr', 'add', `10.213.78.${4 * i + 1}/30`, 'dev', tap]);
      execFileSync('ip', ['link', 'set', tap, 'up']);
    }
  });
  after(async () => {
    for (const tap of taps) spawnSync('ip', ['link', 'del', tap]);
    await rm(dir, { recursive: true, force: true });
  });

  it('create only while Paused; a Full snapshot; load with network_overrides and vsock_override; the agent`s net moves the guest', async () => {
    const kernel = join(dir, 'vmlinux');
    await writeFile(kernel, fakeKernel('elf'));
    const code = await writeGuestProgram(dir);
    const initrd = join(dir, 'initrd');
    await writeFile(initrd, encodeCpio([
      { type: 'file', path: 'bin/aleph-agent', mode: 0o755, data: Buffer.from('agent\n') },
      { type: 'file', path: 'app/start', mode: 0o755, data: readFileSync(join(code, 'start')) },
      { type: 'file', path: 'app/www/index.html', mode: 0o644, data: Buffer.from('restored guest\n') },
    ]));
    const state = join(dir, 'vm.state');
    const memory = join(dir, 'vm.mem');
    const first = await startFake(dir, 'first');
    try {
      await first.api.put('/boot-source', { kernel_image_path: kernel, initrd_path: initrd, boot_args: 'console=ttyS0 aleph.ip=10.213.78.2/30' });
      await first.api.put('/machine-config', { vcpu_count: 1, mem_size_mib: 32 });
      await first.api.put('/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: taps[0] });
      await first.api.put('/vsock', { guest_cid: 3, uds_path: join(dir, 'first.vsock') });
      await first.api.put('/actions', { action_type: 'InstanceStart' });
      await assert.rejects(first.api.put('/snapshot/load', { snapshot_path: state, mem_backend: { backend_type: 'File', backend_path: memory } }), /not supported after starting the microVM/);
      await assert.rejects(first.api.put('/snapshot/create', { snapshot_type: 'Full', snapshot_path: state, mem_file_path: memory }), /Create snapshot error: Cannot save the microVM state: Operation not allowed: save\/restore unavailable while running/);
      await first.api.call('PATCH', '/vm', { state: 'Paused' });
      assert.equal((await first.api.call('GET', '/') as { state: string }).state, 'Paused');
      await first.api.put('/snapshot/create', { snapshot_type: 'Full', snapshot_path: state, mem_file_path: memory });
      assert.equal(statSync(memory).size, 32 * 1024 * 1024);
      await first.api.call('PATCH', '/vm', { state: 'Resumed' });
    } finally {
      await first.stop();
    }

    // An interface the snapshot does not have: the real message, and the process is done.
    const wrong = await startFake(dir, 'wrong');
    try {
      await assert.rejects(
        wrong.api.put('/snapshot/load', { snapshot_path: state, mem_backend: { backend_type: 'File', backend_path: memory }, network_overrides: [{ iface_id: 'eth1', host_dev_name: taps[1] }] }),
        /Load snapshot error: Failed to restore from snapshot: Failed to get snapshot state from file: Unknown Network Device\./,
      );
      assert.equal(await wrong.exited, 1);
    } finally {
      await wrong.stop();
    }

    const second = await startFake(dir, 'second');
    try {
      const vsock = join(dir, 'second.vsock');
      await second.api.put('/snapshot/load', {
        snapshot_path: state, mem_backend: { backend_type: 'File', backend_path: memory }, resume_vm: true,
        network_overrides: [{ iface_id: 'eth0', host_dev_name: taps[1] }], vsock_override: { uds_path: vsock },
      });
      assert.equal((await second.api.call('GET', '/') as { state: string }).state, 'Running');
      // Configuration after a load is post-boot.
      await assert.rejects(second.api.put('/machine-config', { vcpu_count: 1, mem_size_mib: 32 }), /not supported after starting the microVM/);
      // No listener on another port; the agent on 1024 answers, and moves the guest to the new tap's address.
      assert.deepEqual(await vsockSession(vsock, 52, ['time 1 0']), []);
      const answers = await vsockSession(vsock, 1024, ['time 1700000000 5', 'seed 00ff', 'net 10.213.78.6/30 10.213.78.5', 'bogus']);
      assert.match(answers[0]!, /^OK \d+$/);
      assert.deepEqual(answers.slice(1), ['ok time', 'ok seed', 'ok net', 'err bogus unknown']);
      const moved = { kind: 'tcp' as const, host: '10.213.78.6', port: 8080 };
      await waitForHttp(moved, { path: '/', deadline: Date.now() + 10_000 });
      assert.equal((await httpGet(moved, '/index.html')).body, 'restored guest\n');
    } finally {
      await second.stop();
    }
  });
});
