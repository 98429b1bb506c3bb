// Snapshot restore (docs/snapshots.md): the cache on its own, then real VMs under qemu
// TCG booted, saved once ready, restored instead of booted; what a restore must not
// carry over from the saved life (clock, entropy); versions and damage.

import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { mkdtemp, open, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/common/index.js';
import { createDriver } from '../../src/drivers/index.js';
import type { Endpoint, Instance } from '../../src/drivers/index.js';
import { SnapshotStore, snapshotKey } from '../../src/drivers/vm/index.js';
import { qemuArgs } from '../../src/drivers/qemu/index.js';
import type { Program } from '../../src/programs/index.js';
import { guestSetup, processesWith, qemuSkipReason, writeGuestProgram, type GuestSetup } from './qemu-guest.js';
import { makeProgram, nextSlot as makeSlot } from './helpers.js';
import { until } from '../helpers/node.js';

const log = createLogger('test.snapshots');

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'aleph-edge-snap-'));
}

const KEY_A = snapshotKey({ program: 'a' });
const KEY_B = snapshotKey({ program: 'b' });
const KEY_C = snapshotKey({ program: 'c' });

describe('snapshot cache', () => {
  it('keys change with any input', () => {
    assert.match(KEY_A, /^[0-9a-f]{64}$/);
    assert.notEqual(snapshotKey({ program: 'a', env: { X: '1' } }), snapshotKey({ program: 'a', env: { X: '2' } }));
    assert.equal(snapshotKey({ program: 'a' }), KEY_A);
  });

  it('saves an entry whole, finds it intact, and removes a damaged one', async () => {
    const dir = await tempDir();
    try {
      const store = new SnapshotStore(dir, 1 << 20, log);
      const entry = await store.save(KEY_A, 'test', (path) => writeFile(path, Buffer.alloc(4096, 7)));
      assert.ok(entry);
      assert.equal(entry.size, 4096);
      assert.deepEqual(await readdir(dir), [KEY_A], 'no temporary left');
      assert.equal((await store.find(KEY_A))?.sha256, entry.sha256);

      // Same size, one byte changed: only the checksum tells.
      const fd = await open(entry.state, 'r+');
      await fd.write(Buffer.from([8]), 0, 1, 100);
      await fd.close();
      assert.equal(await store.find(KEY_A), undefined);
      assert.deepEqual(await readdir(dir), [], 'the damaged entry is gone');

      await store.save(KEY_B, 'test', (path) => writeFile(path, Buffer.alloc(10)));
      await writeFile(join(dir, KEY_B, 'state'), Buffer.alloc(9));
      assert.equal(await store.find(KEY_B), undefined, 'a truncated state is refused');
      assert.equal(await store.find(KEY_C), undefined, 'absent');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('leaves nothing when the state cannot be made', async () => {
    const dir = await tempDir();
    try {
      const store = new SnapshotStore(dir, 1 << 20, log);
      const entry = await store.save(KEY_A, 'test', async (path) => {
        await writeFile(path, 'partial');
        throw new Error('the VM went away');
      });
      assert.equal(entry, undefined);
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('evicts the least recently used entries past its bound, never the one just saved', async () => {
    const dir = await tempDir();
    try {
      const store = new SnapshotStore(dir, 2500, log);
      await store.save(KEY_A, 'a', (path) => writeFile(path, Buffer.alloc(1000)));
      await store.save(KEY_B, 'b', (path) => writeFile(path, Buffer.alloc(1000)));
      // A used after B: B is now the least recently used.
      await utimes(join(dir, KEY_B), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
      assert.ok(await store.find(KEY_A));
      await store.save(KEY_C, 'c', (path) => writeFile(path, Buffer.alloc(1000)));
      assert.deepEqual((await readdir(dir)).sort(), [KEY_A, KEY_C].sort());
      // Larger than the whole cache: not kept.
      assert.equal(await store.save(KEY_B, 'b', (path) => writeFile(path, Buffer.alloc(3000))), undefined);
      assert.deepEqual((await readdir(dir)).sort(), [KEY_A, KEY_C].sort());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('qemu command line for snapshots', () => {
  it('adds the control channel and loads saved state only from a plain path', () => {
    const base = { machine: 'q35' as const, accel: 'tcg' as const, memoryMib: 128, vcpus: 1, kernel: '/k', initrd: '/i', kernelArgs: [], qmpSocket: '/q.sock', net: { mode: 'user' as const, hostPort: 1, internet: false } };
    const args = qemuArgs({ ...base, control: '/vm/ctl.sock', incoming: '/cache/snap/state' });
    assert.ok(args.join(' ').includes('-chardev socket,id=actl,path=/vm/ctl.sock,server=on,wait=off'));
    assert.ok(args.join(' ').includes('virtserialport,chardev=actl,name=org.aleph.ctl'));
    assert.deepEqual(args.slice(-2), ['-incoming', 'exec:cat /cache/snap/state']);
    assert.throws(() => qemuArgs({ ...base, incoming: '/cache/a b;rm -rf x' }), /needs quoting/);
    assert.ok(!qemuArgs(base).includes('-incoming'));
  });
});

const skip = qemuSkipReason();

/** One request over a fresh connection; the body, or undefined while nothing answers yet. */
async function get(endpoint: Endpoint, path: string): Promise<string | undefined> {
  if (endpoint.kind !== 'tcp') throw new Error('tcp endpoint expected');
  try {
    const response = await fetch(`http://${endpoint.host}:${endpoint.port}${path}`, { signal: AbortSignal.timeout(3000) });
    return response.ok ? await response.text() : undefined;
  } catch {
    return undefined;
  }
}

async function answer(instance: Instance, path: string): Promise<string> {
  let body: string | undefined;
  await until(async () => (body = await get(instance.endpoint, path)) !== undefined, 240_000, `an answer from ${path}`);
  return body!;
}

/** The guest's clock (seconds) and 16 random bytes, as the /cgi-bin/now script prints them. */
function parseNow(body: string): { seconds: number; random: string } {
  const [seconds, random] = body.trim().split('\n');
  return { seconds: Number(seconds), random: random!.replace(/\s+/g, '') };
}

describe('qemu snapshots, real VMs under TCG', { skip: skip || false, timeout: 900_000 }, () => {
  let guest: GuestSetup;
  let code: string;
  let store: SnapshotStore;
  let snapshotDir: string;
  const started: Instance[] = [];

  before(async () => {
    guest = await guestSetup();
    code = await writeGuestProgram(guest.dir);
    await writeFile(join(code, 'www', 'cgi-bin', 'now'), '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\ndate +%s\nhead -c 16 /dev/urandom | od -An -tx1\n', { mode: 0o755 });
    snapshotDir = join(guest.dir, 'snapshots');
    store = new SnapshotStore(snapshotDir, 1 << 30, log);
  });
  after(async () => {
    await Promise.all(started.map((i) => i.stop()));
    for (const pid of processesWith(guest.dir)) process.kill(pid, 'SIGKILL');
    await rm(guest.dir, { recursive: true, force: true });
  });

  function driver() {
    return createDriver('qemu', {
      stopGraceMs: 5000,
      drivers: {
        process: { python: 'python3' },
        qemu: { binary: 'qemu-system-x86_64', kernel: guest.kernel.vmlinuz, initramfs: guest.initramfs, machine: 'auto', accel: 'tcg', network: 'user', runDir: join(guest.dir, 'vms') },
        firecracker: undefined as never,
        network: undefined as never,
        snapshots: { enabled: true, dir: snapshotDir, maxBytes: 1 << 30 },
      },
    });
  }

  function program(hash: string, env: Record<string, string>): Program {
    const p = makeProgram([]);
    p.hash = hash;
    p.launch = { kind: 'vm', code, entrypoint: '/app/start', env, kernel: '', initramfs: '', internet: false };
    return p;
  }

  async function start(p: Program): Promise<Instance> {
    const instance = await driver().start(p, makeSlot());
    started.push(instance);
    return instance;
  }

  it('boots, saves once ready, restores with this life\'s clock and entropy; a new version or a damaged state boots', async (t) => {
    const hash = 'ab'.repeat(32);
    const v1 = program(hash, { VERSION: 'one' });

    const booted = await start(v1);
    assert.equal(booted.restored, false);
    const first = parseNow(await answer(booted, '/cgi-bin/now'));
    booted.ready?.();
    await until(async () => (await store.list()).length === 1, 120_000, 'the snapshot to be saved');
    const savedAt = Date.now();
    assert.ok(await answer(booted, '/cgi-bin/env'), 'the VM serves on after its state was saved');
    await booted.stop();

    // A stale clock would lag by at least this much after the restore.
    await until(() => Date.now() - savedAt >= 8000, 10_000, 'time to pass since the save');
    const restores: Array<{ seconds: number; random: string; host: number }> = [];
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      const restored = await start(v1);
      assert.equal(restored.restored, true, `restore ${i + 1} used the snapshot`);
      const now = parseNow(await answer(restored, '/cgi-bin/now'));
      t.diagnostic(`restore ${i + 1} to first answer: ${Math.round(performance.now() - t0)} ms`);
      restores.push({ ...now, host: Math.floor(Date.now() / 1000) });
      assert.match(await answer(restored, '/cgi-bin/env'), /GREETING=/);
      await restored.stop();
    }
    for (const r of restores) assert.ok(Math.abs(r.host - r.seconds) <= 2, `guest clock ${r.seconds} within 2 s of the host's ${r.host}`);
    assert.notEqual(restores[0]!.random, restores[1]!.random, 'two lives of one snapshot draw different random bytes');
    assert.notEqual(restores[0]!.random, first.random);

    // An amended program (other variables) never meets the old state.
    const v2 = program(hash, { VERSION: 'two' });
    const amended = await start(v2);
    assert.equal(amended.restored, false, 'a new version boots');
    await answer(amended, '/index.html');
    await amended.stop();

    // A damaged state (same size, other bytes) is refused before qemu sees it: boot.
    const [key] = await readdir(snapshotDir);
    const state = join(snapshotDir, key!, 'state');
    const bytes = await readFile(state);
    bytes[bytes.length >> 1] ^= 0xff;
    await writeFile(state, bytes);
    const fallback = await start(v1);
    assert.equal(fallback.restored, false, 'a damaged snapshot falls back to a boot');
    assert.equal(await answer(fallback, '/index.html'), 'hello from the guest\n');
    assert.deepEqual(await readdir(snapshotDir), [], 'the damaged entry was removed');
    await fallback.stop();
  });
});
