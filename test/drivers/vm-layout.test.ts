// The one boot layout shared by qemu and firecracker (src/drivers/vm/layout.ts): drive
// order, the /etc/aleph/ files, disks to make, and refusals naming what is wrong.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DriverStartError } from '../../src/drivers/index.js';
import { guestDevice, hostLabel, prepareDisks, vmLayout } from '../../src/drivers/vm/index.js';
import type { VmLaunch } from '../../src/programs/index.js';

const HASH = '0f'.repeat(32);

function alephLaunch(extra: Partial<NonNullable<VmLaunch['aleph']>> = {}): VmLaunch {
  return {
    kind: 'vm', code: '/cache/code.squashfs', entrypoint: '', env: { VM_CUSTOM_NUMBER: '32' }, kernel: '', initramfs: '', internet: false,
    aleph: { interface: 'asgi', asgiApp: 'main:app', runtime: '/cache/runtime/blob', volumes: [], ...extra },
  };
}

describe('VM boot layout', () => {
  it('orders runtime, code, then volumes (parents first) and writes the mounts file the init reads', () => {
    const layout = vmLayout({
      hash: HASH, code: 'image', vmDir: '/run/vm1',
      launch: alephLaunch({
        volumes: [
          { mount: '/var/lib/example/sub', kind: 'immutable', source: '/cache/v/blob', sizeMib: 0, readOnly: true },
          { mount: '/var/lib/example', kind: 'persistent', source: '/vol/hash/data.img', sizeMib: 5, readOnly: false },
          { mount: '/scratch', kind: 'ephemeral', source: '', sizeMib: 8, readOnly: false },
          { mount: '/data', kind: 'data', source: '/cache/d.squashfs', sizeMib: 0, readOnly: true },
        ],
      }),
    });
    assert.deepEqual(layout.drives.map((d) => [d.id, d.device, d.path, d.readOnly, d.mode]), [
      ['runtime', 'vda', '/cache/runtime/blob', true, 'root'],
      ['code', 'vdb', '/cache/code.squashfs', true, 'ro'],
      ['volume_2', 'vdc', '/run/vm1/volume_2.ephemeral.img', false, 'rw'],
      ['volume_3', 'vdd', '/cache/d.squashfs', true, 'overlay'],
      ['volume_1', 'vde', '/vol/hash/data.img', false, 'rw'],
      ['volume_0', 'vdf', '/cache/v/blob', true, 'ro'],
    ]);
    assert.equal(layout.files.mounts.split('\n')[0], 'runtime vda / squashfs root');
    assert.equal(layout.files.mounts.split('\n')[1], 'code vdb /opt/code squashfs ro');
    assert.deepEqual(layout.disks, [
      { path: '/run/vm1/volume_2.ephemeral.img', sizeMib: 8, lifetime: 'boot' },
      { path: '/vol/hash/data.img', sizeMib: 5, lifetime: 'persistent' },
    ]);
    assert.equal(layout.files.entry, 'python3\n-m\naleph_asgi\n--app\nmain:app\n--app-dir\n/opt/code\n--port\n8080\n');
    assert.equal(layout.files.cwd, '/opt/code\n');
    assert.equal(layout.files['stop-timeout'], '13\n'); // the ASGI server's own shutdown: 3 s in-flight + 10 s lifespan
    assert.equal(layout.files.hostname, `${hostLabel(HASH)}\n`);
    assert.equal(hostLabel(HASH).length, 52);
    assert.match(layout.files.env, /^export PATH='.*'\n/);
    assert.match(layout.files.env, /export PYTHONPATH='\/opt\/aleph-guest'\n/);
    assert.match(layout.files.env, /export VM_CUSTOM_NUMBER='32'\n/);
    assert.equal(layout.codeDir, undefined);
  });

  it('a binary program runs its entrypoint with its arguments; a local code folder without runtime is packed at /app', () => {
    const binary = vmLayout({ hash: HASH, code: 'image', vmDir: '/r', launch: { ...alephLaunch({ interface: 'binary', asgiApp: '', args: ['--flag', 'x y'] }), entrypoint: '/opt/code/run' } });
    assert.equal(binary.files.entry, '/opt/code/run\n--flag\nx y\n');
    assert.equal(binary.files['stop-timeout'], '2\n');
    const localLaunch: VmLaunch = { kind: 'vm', code: '/srv/site', entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false };
    const local = vmLayout({ hash: HASH, code: 'dir', vmDir: '/r', launch: localLaunch });
    assert.deepEqual(local.drives, []);
    assert.equal(local.codeDir, '/srv/site');
    assert.equal(local.files.mounts, '');
    assert.equal(local.files.cwd, '/app\n');
    assert.equal(local.files.env, '');
    // A driver's default runtime (drivers.firecracker.rootfs) is a runtime drive, never a root device.
    const withDefault = vmLayout({ hash: HASH, code: 'image', vmDir: '/r', defaultRuntime: '/rootfs.img', launch: { ...localLaunch, code: '/c.img' } });
    assert.deepEqual(withDefault.drives.map((d) => [d.id, d.mode, d.mount]), [['runtime', 'root', '/'], ['code', 'ro', '/opt/code']]);
  });

  it('refuses what the guest cannot do, naming it', () => {
    const refuses = (launch: VmLaunch, pattern: RegExp, code: 'dir' | 'image' = 'image') =>
      assert.throws(() => vmLayout({ hash: HASH, code, vmDir: '/r', launch }), (err: Error) => err instanceof DriverStartError && pattern.test(err.message));
    refuses(alephLaunch({ volumes: [{ mount: '/a/../etc', kind: 'ephemeral', source: '', sizeMib: 1, readOnly: false }] }), /volume 0 \(ephemeral\): mount point "\/a\/..\/etc" is not a normalized absolute path/);
    refuses(alephLaunch({ volumes: [{ mount: 'relative', kind: 'ephemeral', source: '', sizeMib: 1, readOnly: false }] }), /not a normalized absolute path/);
    refuses(alephLaunch({ volumes: [{ mount: '/with space', kind: 'ephemeral', source: '', sizeMib: 1, readOnly: false }] }), /without spaces/);
    refuses(alephLaunch({ volumes: [{ mount: '/proc/x', kind: 'ephemeral', source: '', sizeMib: 1, readOnly: false }] }), /reserved for the guest init/);
    refuses(alephLaunch({ volumes: [{ mount: '/s', kind: 'ephemeral', source: '', sizeMib: 0, readOnly: false }] }), /volume 0 \(ephemeral\): size_mib is required/);
    refuses(alephLaunch({ volumes: [{ mount: '/s', kind: 'persistent', source: '/v/x.img', sizeMib: 0, readOnly: false }] }), /size_mib is required/);
    refuses(alephLaunch({ asgiApp: 'main' }), /ASGI app "main" is not module:attribute/);
    refuses(alephLaunch(), /code folder cannot be used with a runtime/, 'dir');
    refuses({ ...alephLaunch({ runtime: '' }) }, /ASGI program needs a runtime/);
  });

  it('names devices as the kernel does', () => {
    assert.deepEqual([0, 1, 25, 26, 27].map(guestDevice), ['vda', 'vdb', 'vdz', 'vdaa', 'vdab']);
  });
});

describe('VM disks', () => {
  it('refuses a read-only image that is not a squashfs, makes ephemeral images fresh and persistent ones once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-disks-'));
    try {
      const runtime = join(dir, 'runtime');
      await writeFile(runtime, 'not a filesystem');
      const volumes = [
        { mount: '/var/lib/example', kind: 'persistent' as const, source: join(dir, 'volumes', HASH, 'data.img'), sizeMib: 4, readOnly: false },
        { mount: '/scratch', kind: 'ephemeral' as const, source: '', sizeMib: 2, readOnly: false },
      ];
      const bad = vmLayout({ hash: HASH, code: 'none', vmDir: dir, launch: alephLaunch({ runtime, volumes }) });
      await assert.rejects(prepareDisks(bad), /the runtime image .*runtime is not a squashfs image/);

      const squash = join(dir, 'rt.squashfs');
      execFileSync('mksquashfs', ['/etc/hostname', squash, '-quiet', '-noappend']);
      const layout = vmLayout({ hash: HASH, code: 'none', vmDir: dir, launch: alephLaunch({ runtime: squash, volumes }) });
      const release = await prepareDisks(layout);
      const persistent = join(dir, 'volumes', HASH, 'data.img');
      const info = await stat(persistent);
      assert.equal(info.size, 4 * 1024 * 1024);
      assert.ok(info.blocks * 512 < info.size, 'sparse');
      assert.match(execFileSync('dumpe2fs', ['-h', persistent], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), /Filesystem magic number:\s+0xEF53/);
      const ephemeral = join(dir, 'volume_1.ephemeral.img');
      assert.equal((await stat(ephemeral)).size, 2 * 1024 * 1024);

      // A second start waits for the first VM to release the persistent volume, then keeps its contents.
      const marker = (await readFile(persistent)).subarray(1024, 1100);
      let second = false;
      const next = prepareDisks(layout).then((r) => {
        second = true;
        return r;
      });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(second, false, 'held by the first VM');
      await writeFile(ephemeral, 'dirty');
      release();
      const release2 = await next;
      assert.ok((await readFile(persistent)).subarray(1024, 1100).equals(marker), 'the persistent image is not re-made');
      assert.equal((await stat(ephemeral)).size, 2 * 1024 * 1024, 'the ephemeral image is made fresh');
      release2();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
