// The warm pool with real VMs (qemu TCG, docs/warm-pool.md): the orchestrator keeps a
// VM booted with no program; a program never seen is attached to it (NIC, code and
// volume drives hot-plugged over QMP) and answers with its own code and volume; the
// pool refills; the next program gets another VM, where nothing of the first is; a
// budget with no room left keeps the pool empty. Two VMs at most run at once.

import { readFileSync } from 'node:fs';
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NotFoundError, setLogLevel } from '../../src/common/index.js';
import { QemuDriver, waitForHttp } from '../../src/drivers/index.js';
import { qemuArgs } from '../../src/drivers/qemu/index.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { Orchestrator, type GuestServices, type ReadinessProbe } from '../../src/orchestrator/index.js';
import { SnapshotStore } from '../../src/drivers/vm/index.js';
import { createLogger } from '../../src/common/index.js';
import http from 'node:http';
import type { Program, ProgramSource } from '../../src/programs/index.js';
import { guestSetup, processesWith, qemuSkipReason, type GuestSetup } from './qemu-guest.js';
import { httpGet } from './helpers.js';
import { until } from '../helpers/node.js';
import { ensureRuntime } from '../../src/drivers/image/index.js';
import type { QemuPrewarmSettings } from '../../src/config/index.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

const skip = qemuSkipReason();
const probe: ReadinessProbe = async (endpoint, { path, signal }) => {
  await waitForHttp(endpoint, { path, signal, deadline: Number.MAX_SAFE_INTEGER });
};

async function squashfs(dir: string, name: string, files: Record<string, string | { text: string; mode: number }>): Promise<string> {
  const src = join(dir, `${name}.d`);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(src, path, '..'), { recursive: true });
    const { text, mode } = typeof content === 'string' ? { text: content, mode: 0o644 } : content;
    await writeFile(join(src, path), text);
    await chmod(join(src, path), mode);
  }
  const image = join(dir, `${name}.squashfs`);
  execFileSync('mksquashfs', [src, image, '-noappend', '-quiet', '-all-root']);
  return image;
}

/** A runtime of a static busybox only: enough for a shell script and httpd, and small. */
async function busyboxRuntime(dir: string): Promise<string> {
  const root = join(dir, 'runtime.d');
  await mkdir(join(root, 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(root, 'bin', 'busybox'));
  for (const applet of ['sh', 'httpd', 'ls', 'cat', 'echo', 'wget']) await symlink('busybox', join(root, 'bin', applet));
  const image = join(dir, 'runtime.squashfs');
  execFileSync('mksquashfs', [root, image, '-noappend', '-quiet', '-all-root']);
  return image;
}

/** A qemu driver (user networking) whose warm VMs have this shape. */
function pooledDriver(setup: GuestSetup, runDir: string, prewarm: QemuPrewarmSettings): QemuDriver {
  return new QemuDriver({
    stopGraceMs: 5_000, binary: 'qemu-system-x86_64', kernel: setup.kernel.vmlinuz, initramfs: setup.initramfs,
    machine: 'auto', accel: 'auto', network: 'user', runDir, prewarm,
  });
}

/** The programs of a map, as the orchestrator asks for them. */
function sourceOf(programs: Map<string, Program>): ProgramSource {
  return {
    resolve: async (hash) => {
      const program = programs.get(hash);
      if (!program) throw new NotFoundError('unknown program');
      return program;
    },
    known: () => [...programs.values()],
    exists: async (hash) => programs.has(hash),
  };
}

describe('warm VM command line', () => {
  it('has no NIC and empty root ports to hot-plug into', () => {
    const args = qemuArgs({
      machine: 'q35', accel: 'tcg', memoryMib: 128, vcpus: 1, kernel: '/k', initrd: '/i', kernelArgs: ['aleph.pool=1'],
      qmpSocket: '/q.sock', net: { mode: 'none' }, drives: [{ id: 'runtime', path: '/rt.squashfs', readOnly: true }], hotplugPorts: 3,
    }).join(' ');
    assert.doesNotMatch(args, /-netdev|virtio-net/);
    assert.match(args, /-device pcie-root-port,id=hp0,chassis=1 -device pcie-root-port,id=hp1,chassis=2 -device pcie-root-port,id=hp2,chassis=3/);
    assert.match(args, /serial=runtime/);
    assert.match(args, /aleph\.pool=1/);
  });
});

describe('snapshot labels (restore beats the pool)', () => {
  it('tells whether any state was saved for a program', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'aewp-snap-'));
    try {
      const store = new SnapshotStore(dir, 1 << 20, createLogger('test.snapshots'));
      assert.equal(await store.hasLabel(`qemu ${'a'.repeat(64)}`), false);
      await store.save('1'.repeat(64), `qemu ${'a'.repeat(64)}`, (path) => writeFile(path, 'state'));
      assert.equal(await store.hasLabel(`qemu ${'a'.repeat(64)}`), true);
      assert.equal(await store.hasLabel(`qemu ${'b'.repeat(64)}`), false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('warm pool (qemu)', { skip: skip || false, timeout: 900_000 }, () => {
  let setup: GuestSetup;
  let runtime: string;
  const programs = new Map<string, Program>();

  /** A program on the busybox runtime: its code says its name, its volume too; it leaves a file in its own /tmp. */
  async function addProgram(name: string, hash: string): Promise<void> {
    const code = await squashfs(setup.dir, `code-${name}`, {
      start: { text: `#!/bin/sh\necho "secret of ${name}" > /tmp/left-by-${name}\nexec httpd -f -p 8080 -h /opt/code/www\n`, mode: 0o755 },
      'www/index.html': `code of ${name}\n`,
      'www/cgi-bin/look': { text: '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\necho "volume: $(cat /data/content)"\necho "tmp: $(ls /tmp)"\necho "host: $(cat /etc/hostname)"\necho "api: $(wget -q -O- "$ALEPH_API_HOST/who" 2>&1)"\n', mode: 0o755 },
    });
    const volume = await squashfs(setup.dir, `volume-${name}`, { content: `volume of ${name}` });
    programs.set(hash, {
      hash, name, memoryMib: 128, vcpus: 1, healthPath: '', requestTimeoutMs: 0,
      launch: {
        kind: 'vm', code, entrypoint: '/opt/code/start', env: {}, kernel: '', initramfs: '', internet: false,
        aleph: { interface: 'binary', asgiApp: '', runtime, volumes: [{ mount: '/data', kind: 'immutable', source: volume, sizeMib: 0, readOnly: true }] },
      },
    });
  }

  const source = sourceOf(programs);

  before(async () => {
    setup = await guestSetup();
    runtime = await busyboxRuntime(setup.dir);
    await addProgram('alpha', 'a1'.repeat(32));
    await addProgram('beta', 'b2'.repeat(32));
  });

  after(async () => {
    if (setup) await rm(setup.dir, { recursive: true, force: true });
  });

  it('serves never-seen programs from warm VMs with their own code and volume, refills, and keeps to the budget', async () => {
    const runDir = join(setup.dir, 'vms');
    // The busybox runtime has no python3: the warm VM's preloaded Python exits at
    // once and programs start as after a boot (the fallback, proven here).
    const driver = pooledDriver(setup, runDir, { runtime, memoryMib: 128, vcpus: 1, preload: ['fastapi'] });
    const metrics = new MetricsRegistry();
    // Each execution's own guest API: a server on a socket of its own that names the program.
    let sessions = 0;
    const guest: GuestServices = {
      open: async (program) => {
        const socket = join(setup.dir, `guest-${++sessions}.sock`);
        const server = http.createServer((_req, res) => res.end(`guest API of ${program.name}`));
        await new Promise<void>((resolve) => server.listen(socket, resolve));
        return { socket, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
      },
    };
    // Room for two 128 MiB VMs: with both programs running, none for the pool.
    const o = new Orchestrator({
      settings: {
        driver: 'qemu', idleTimeoutMs: 3_600_000, bootTimeoutMs: 300_000, requestTimeoutMs: 30_000,
        maxVms: 8, memoryBudgetMib: 256, holdQueue: 10, stopGraceMs: 5_000, prewarm: 1,
      },
      programs: source, driver, probe, metrics, guest,
    });
    const gauge = (state: string) => Number(new RegExp(`aleph_edge_warm_vms\\{state="${state}"\\} (\\d+)`).exec(metrics.render())?.[1] ?? 'NaN');
    const attaches = () => Number(/aleph_edge_warm_vm_attaches_total (\d+)/.exec(metrics.render())?.[1] ?? '0');
    // qemu's own processes: the per-connection socat of a guest-API forward names runDir too,
    // and lives on for a few seconds after its connection.
    const qemus = () => processesWith(runDir).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!.includes('qemu-system');
      } catch {
        return false;
      }
    }).length;
    try {
      o.prewarm();
      assert.equal(gauge('booting'), 1);
      await until(() => gauge('ready') === 1, 300_000, 'a warm VM');

      const alpha = await o.acquire('a1'.repeat(32));
      assert.equal(attaches(), 1, 'alpha was attached to the warm VM, not booted');
      assert.equal((await httpGet(alpha.endpoint, '/')).body, 'code of alpha\n');
      const lookA = (await httpGet(alpha.endpoint, '/cgi-bin/look')).body;
      assert.match(lookA, /^volume: volume of alpha$/m);
      assert.match(lookA, /^tmp: left-by-alpha$/m);
      assert.match(lookA, /^host: [a-z2-7]{52}$/m, 'the program\'s own hostname');
      assert.match(lookA, /^api: guest API of alpha$/m, 'its own guest API, through the hot-plugged NIC\'s guestfwd');
      alpha.release();

      // Refilled in the background: alpha's VM plus a new warm one (256 MiB) fit.
      await until(() => gauge('ready') === 1, 300_000, 'the pool refilled');
      assert.equal(qemus(), 2);

      const beta = await o.acquire('b2'.repeat(32));
      assert.equal(attaches(), 2);
      // Both programs hold the budget: the pool starts nothing (it is refilled, if at all, right after an attach).
      assert.equal(gauge('booting') + gauge('ready'), 0, 'no warm VM over the budget');
      assert.equal((await httpGet(beta.endpoint, '/')).body, 'code of beta\n');
      const lookB = (await httpGet(beta.endpoint, '/cgi-bin/look')).body;
      assert.match(lookB, /^volume: volume of beta$/m);
      assert.match(lookB, /^tmp: left-by-beta$/m, 'nothing alpha left is there');
      assert.match(lookB, /^api: guest API of beta$/m);
      assert.doesNotMatch(lookB, /alpha/);
      beta.release();
      assert.equal(qemus(), 2);

      // alpha's VM is gone with alpha (used once): the room goes back to the pool.
      assert.equal(await o.stop('a1'.repeat(32)), true);
      assert.equal(gauge('booting') + gauge('ready'), 1, 'the pool takes the freed room');
    } finally {
      await o.drain(10_000);
    }
    await until(() => qemus() === 0, 60_000, 'every qemu gone after the drain');
  });
});

describe('warm pool with a preloaded Python (qemu, the built runtime)', { skip: skip || false, timeout: 900_000 }, () => {
  let setup: GuestSetup;
  let runtime: string;

  before(async () => {
    setup = await guestSetup();
    // Built by .ci/setup.d/runtime.sh (minutes): never here, so a missing one fails clearly.
    runtime = await ensureRuntime(undefined, undefined, undefined, true);
  });

  after(async () => {
    if (setup) await rm(setup.dir, { recursive: true, force: true });
  });

  /** A FastAPI program: says its name, a variable of its own and where it runs. */
  async function fastapiProgram(name: string, hash: string, extraEnv: Record<string, string> = {}): Promise<Program> {
    const code = await squashfs(setup.dir, `code-${name}`, {
      'main.py': [
        'import os, sys',
        'from fastapi import FastAPI',
        'app = FastAPI()',
        '@app.get("/")',
        'def root():',
        `    return {"name": "${name}", "secret": os.environ.get("SECRET"), "cwd": os.getcwd(), "path0": sys.path[0], "host": os.uname().nodename}`,
        '',
      ].join('\n'),
    });
    return {
      hash, name, memoryMib: 256, vcpus: 1, healthPath: '', requestTimeoutMs: 0,
      launch: {
        kind: 'vm', code, entrypoint: '', env: { SECRET: `secret of ${name}`, ...extraEnv }, kernel: '', initramfs: '', internet: false,
        aleph: { interface: 'asgi', asgiApp: 'main:app', runtime, volumes: [] },
      },
    };
  }

  it('a FastAPI program is taken by the Python that imported FastAPI before it came; one that sets PYTHONHASHSEED is started afresh', async () => {
    const runDir = join(setup.dir, 'vms');
    const driver = pooledDriver(setup, runDir, { runtime, memoryMib: 256, vcpus: 1, preload: ['fastapi'] });
    const programs = new Map<string, Program>();
    programs.set('c3'.repeat(32), await fastapiProgram('gamma', 'c3'.repeat(32)));
    programs.set('d4'.repeat(32), await fastapiProgram('delta', 'd4'.repeat(32), { PYTHONHASHSEED: '0' }));
    const source = sourceOf(programs);
    const metrics = new MetricsRegistry();
    const o = new Orchestrator({
      settings: {
        driver: 'qemu', idleTimeoutMs: 3_600_000, bootTimeoutMs: 600_000, requestTimeoutMs: 30_000,
        maxVms: 2, memoryBudgetMib: 512, holdQueue: 10, stopGraceMs: 5_000, prewarm: 1,
      },
      programs: source, driver, probe, metrics,
    });
    const gauge = (state: string) => Number(new RegExp(`aleph_edge_warm_vms\\{state="${state}"\\} (\\d+)`).exec(metrics.render())?.[1] ?? 'NaN');
    const attaches = () => Number(/aleph_edge_warm_vm_attaches_total (\d+)/.exec(metrics.render())?.[1] ?? '0');
    const console = (hash: string) => o.logs(hash).map((e) => e.line).join('\n');
    try {
      o.prewarm();
      await until(() => gauge('ready') === 1, 600_000, 'a warm VM with FastAPI imported');

      const gamma = await o.acquire('c3'.repeat(32));
      assert.equal(attaches(), 1, 'gamma was attached to the warm VM');
      const answer = JSON.parse((await httpGet(gamma.endpoint, '/')).body) as Record<string, string>;
      assert.deepEqual(answer, { name: 'gamma', secret: 'secret of gamma', cwd: '/opt/code', path0: '/opt/code', host: answer.host });
      assert.match(answer.host!, /^[a-z2-7]{52}$/, 'its own hostname');
      assert.match(console('c3'.repeat(32)), /the preloaded Python took the program/);
      gamma.release();
      assert.equal(await o.stop('c3'.repeat(32)), true);

      await until(() => gauge('ready') === 1, 600_000, 'the pool refilled');
      const delta = await o.acquire('d4'.repeat(32));
      assert.equal(attaches(), 2, 'delta was attached to a warm VM too');
      const second = JSON.parse((await httpGet(delta.endpoint, '/')).body) as Record<string, string>;
      assert.equal(second.name, 'delta');
      assert.equal(second.secret, 'secret of delta');
      assert.match(console('d4'.repeat(32)), /the preloaded Python did not take the program \(refused PYTHONHASHSEED is read at interpreter start\)/);
      delta.release();
    } finally {
      await o.drain(10_000);
    }
  });
});
