// The keep-running API with real processes: kept programs start without a request,
// are never idle-stopped, come back after dying (with backoff), are remembered in a
// file across orchestrator restarts, and stop when unkept. Persistent programs are
// never idle-stopped either.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setLogLevel } from '../../src/common/index.js';
import type { OrchestratorSettings } from '../../src/config/index.js';
import { ProcessDriver, waitForHttp } from '../../src/drivers/index.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { Orchestrator, type BackoffPolicy, type ReadinessProbe } from '../../src/orchestrator/index.js';
import { LocalProgramSource, type Program, type ProgramSource } from '../../src/programs/index.js';
import { fixtureProgram } from '../helpers/paths.js';
import { alive, until } from '../helpers/node.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

const probe: ReadinessProbe = async (endpoint, { path: p, signal }) => {
  await waitForHttp(endpoint, { path: p, signal, deadline: Number.MAX_SAFE_INTEGER });
};

const hashOf = (n: number) => (0xeee00 + n).toString(16).padStart(64, '0');

describe('orchestrator keep-running API', () => {
  let dir: string;
  const orchestrators: Orchestrator[] = [];

  function source(entries: Array<{ n: number; env?: Record<string, string> }>, extra: Partial<Program> = {}): ProgramSource {
    const local = new LocalProgramSource(entries.map((e) => ({
      hash: hashOf(e.n), name: `k${e.n}`, command: [process.execPath, fixtureProgram('sockets.js')], cwd: dir,
      env: { STARTS_FILE: path.join(dir, `starts-${e.n}`), ...e.env }, memoryMib: 64, vcpus: 1, healthPath: '', requestTimeoutMs: 0,
    })));
    // Program fields a local entry cannot set (persistent comes from Aleph messages).
    return { resolve: async (hash) => ({ ...(await local.resolve(hash)), ...extra }), known: () => local.known(), exists: (hash) => local.exists(hash) };
  }

  function orchestrator(programs: ProgramSource, options: { keptFile?: string; settings?: Partial<OrchestratorSettings>; backoff?: BackoffPolicy } = {}): Orchestrator {
    const settings: OrchestratorSettings = {
      driver: 'process', idleTimeoutMs: 200, bootTimeoutMs: 10_000, requestTimeoutMs: 30_000,
      maxVms: 64, memoryBudgetMib: 8192, holdQueue: 100, stopGraceMs: 2_000, ...options.settings,
    };
    const o = new Orchestrator({
      settings, programs, driver: new ProcessDriver({ stopGraceMs: 2000 }), probe, metrics: new MetricsRegistry(),
      keptFile: options.keptFile, backoff: options.backoff,
    });
    orchestrators.push(o);
    return o;
  }

  async function starts(n: number): Promise<number> {
    return (await readFile(path.join(dir, `starts-${n}`), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
  }

  const stateOf = (o: Orchestrator, n: number) => o.list().find((e) => e.hash === hashOf(n) && e.state !== 'failed');

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-keep-'));
  });
  after(async () => {
    await Promise.all(orchestrators.map((o) => o.drain(0)));
    await rm(dir, { recursive: true, force: true });
  });

  it('keep starts the program with no request, idle_timeout never stops it, unkeep stops and forgets it', async () => {
    const keptFile = path.join(dir, 'kept-1.json');
    const o = orchestrator(source([{ n: 1 }]), { keptFile });
    await o.keep(hashOf(1), 'allocation');
    assert.deepEqual(o.kept(), [{ hash: hashOf(1), reason: 'allocation' }]);
    assert.deepEqual(JSON.parse(await readFile(keptFile, 'utf8')).kept, [{ hash: hashOf(1), reason: 'allocation' }], 'persisted before keep() resolves');
    await until(() => stateOf(o, 1)?.state === 'ready', 10_000, 'kept program ready');
    const pid = stateOf(o, 1)!.pid!;
    // Many idle timeouts (200 ms) pass: it stays, and so does the same process.
    const t0 = Date.now();
    await until(() => Date.now() - t0 > 1_500, 3_000, 'time to pass');
    assert.equal(stateOf(o, 1)?.pid, pid);
    assert.equal(stateOf(o, 1)?.requests, 0, 'starting it served no request');
    // A request's lease and release do not arm an idle stop either.
    (await o.acquire(hashOf(1))).release();
    const t1 = Date.now();
    await until(() => Date.now() - t1 > 800, 3_000, 'time to pass');
    assert.equal(stateOf(o, 1)?.pid, pid);
    await o.unkeep(hashOf(1));
    assert.equal(stateOf(o, 1), undefined);
    assert.equal(alive(pid), false);
    assert.deepEqual(o.kept(), []);
    assert.deepEqual(JSON.parse(await readFile(keptFile, 'utf8')).kept, []);
    assert.equal(await starts(1), 1);
  });

  it('restarts a kept program that dies, with backoff from the second early death', async () => {
    const o = orchestrator(source([{ n: 2 }]), { backoff: { baseMs: 600, maxMs: 5_000, stableMs: 30_000 } });
    await o.keep(hashOf(2), 'operator');
    await until(() => stateOf(o, 2)?.state === 'ready', 10_000, 'kept program ready');
    const crash = async () => {
      const info = stateOf(o, 2)!;
      await fetch(`http://${info.endpoint}/crash`).catch(() => {});
      await until(() => !alive(info.pid!), 5_000, 'the crash');
      return info.pid!;
    };
    const first = await crash();
    // The first early death is free: back at once, no request needed.
    await until(() => stateOf(o, 2)?.state === 'ready' && stateOf(o, 2)?.pid !== first, 10_000, 'restart after the first crash');
    const crashedAt = Date.now();
    const second = await crash();
    await until(() => stateOf(o, 2)?.state === 'ready' && stateOf(o, 2)?.pid !== second, 10_000, 'restart after the second crash');
    assert.ok(Date.now() - crashedAt >= 600, 'the second early death waits for the backoff');
    assert.equal(await starts(2), 3);
  });

  it('retries a kept program whose boots fail, after each backoff, and runs it once it can', async () => {
    const flag = path.join(dir, 'fail-3');
    await writeFile(flag, '');
    // Exits at start while the flag file exists.
    const script = path.join(dir, 'flaky.mjs');
    await writeFile(script, `import { existsSync } from 'node:fs';\nif (existsSync(${JSON.stringify(flag)})) process.exit(3);\nawait import(${JSON.stringify(fixtureProgram('sockets.js'))});\n`);
    const local = source([{ n: 3 }]);
    const programs: ProgramSource = { ...local, resolve: async (hash) => { const p = await local.resolve(hash); return { ...p, launch: { ...p.launch, command: [process.execPath, script] } as Program['launch'] }; } };
    const o = orchestrator(programs, { backoff: { baseMs: 150, maxMs: 1_000 } });
    await o.keep(hashOf(3), 'allocation');
    await until(() => o.list().some((e) => e.hash === hashOf(3) && e.state === 'failed' && e.restarts >= 2), 10_000, 'repeated failed boots');
    await rm(flag);
    await until(() => stateOf(o, 3)?.state === 'ready', 10_000, 'ready once the program can start');
  });

  it('remembers the kept set across a restart and starts it again at boot', async () => {
    const keptFile = path.join(dir, 'kept-4.json');
    const programs = source([{ n: 4 }, { n: 5 }]);
    const first = orchestrator(programs, { keptFile });
    await first.keep(hashOf(4), 'allocation');
    await first.keep(hashOf(5), 'notify');
    await until(() => stateOf(first, 4)?.state === 'ready' && stateOf(first, 5)?.state === 'ready', 10_000, 'both ready');
    await first.unkeep(hashOf(5));
    await first.drain(0);
    assert.equal(first.list().length, 0);

    const second = orchestrator(programs, { keptFile });
    await second.resumeKept();
    assert.deepEqual(second.kept(), [{ hash: hashOf(4), reason: 'allocation' }]);
    await until(() => stateOf(second, 4)?.state === 'ready', 10_000, 'kept program started at boot');
    assert.equal(stateOf(second, 5), undefined, 'the unkept one stays stopped');
    assert.equal(await starts(4), 2);
  });

  it('ignores a damaged kept file (logged), starting nothing', async () => {
    const keptFile = path.join(dir, 'kept-6.json');
    await writeFile(keptFile, '{"version":1,"kept":[{"hash":"../etc","reason":"allocation"}]}');
    const o = orchestrator(source([{ n: 6 }]), { keptFile });
    await o.resumeKept();
    assert.deepEqual(o.kept(), []);
    assert.equal(o.list().length, 0);
    await assert.rejects(o.keep('not-a-hash', 'operator'), TypeError);
  });

  it('never stops a persistent program for idleness, nor evicts it', async () => {
    const o = orchestrator(source([{ n: 7 }], { persistent: true }), { settings: { maxVms: 1 } });
    (await o.acquire(hashOf(7))).release();
    const pid = stateOf(o, 7)!.pid!;
    const t0 = Date.now();
    await until(() => Date.now() - t0 > 1_000, 3_000, 'time to pass');
    assert.equal(stateOf(o, 7)?.pid, pid, 'still the same execution after five idle timeouts');
    // No room for another program: the idle persistent one is not a victim.
    const other = orchestrator(source([{ n: 7 }, { n: 8 }], { persistent: true }), { settings: { maxVms: 1 } });
    (await other.acquire(hashOf(7))).release();
    await assert.rejects(other.acquire(hashOf(8)), /capacity/);
    await other.drain(0);
  });
});
