import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BootFailedError, UnavailableError, setLogLevel } from '../../src/common/index.js';
import type { OrchestratorSettings } from '../../src/config/index.js';
import { ProcessDriver, waitForHttp } from '../../src/drivers/index.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { Orchestrator, type ReadinessProbe } from '../../src/orchestrator/index.js';
import type { ProgramSource } from '../../src/programs/index.js';
import { LocalProgramSource } from '../../src/programs/index.js';
import { fixtureProgram } from '../helpers/paths.js';
import { alive, until } from '../helpers/node.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

const probe: ReadinessProbe = async (endpoint, { path: p, signal }) => {
  await waitForHttp(endpoint, { path: p, signal, deadline: Number.MAX_SAFE_INTEGER });
};

function settings(overrides: Partial<OrchestratorSettings> = {}): OrchestratorSettings {
  return {
    driver: 'process', idleTimeoutMs: 60_000, bootTimeoutMs: 10_000, requestTimeoutMs: 30_000,
    maxVms: 64, memoryBudgetMib: 8192, holdQueue: 100, stopGraceMs: 2_000, ...overrides,
  };
}

const hashOf = (n: number) => n.toString(16).padStart(64, '0');

// The orchestrator's logic (timers, backoff, admission, drain) is tested on a fake
// clock in logic.test.ts; these tests check it with real processes, and assert only
// what does not depend on how fast the machine is.
describe('orchestrator with the process driver', () => {
  let dir: string;
  let startsFile: string;
  const orchestrators: Orchestrator[] = [];

  function programs(entries: Array<{ n: number; env?: Record<string, string>; memoryMib?: number; script?: string }>): ProgramSource {
    return new LocalProgramSource(entries.map((e) => ({
      hash: hashOf(e.n), name: `p${e.n}`, command: [process.execPath, e.script ?? fixtureProgram('sockets.js')], cwd: dir,
      env: { STARTS_FILE: startsFile, ...e.env }, memoryMib: e.memoryMib ?? 64, vcpus: 1, healthPath: '', requestTimeoutMs: 0,
    })));
  }

  function orchestrator(source: ProgramSource, overrides: Partial<OrchestratorSettings> = {}): Orchestrator {
    const o = new Orchestrator({ settings: settings(overrides), programs: source, driver: new ProcessDriver({ stopGraceMs: 2000 }), probe, metrics: new MetricsRegistry() });
    orchestrators.push(o);
    return o;
  }

  async function starts(): Promise<string[]> {
    return (await readFile(startsFile, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  }

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-orch-'));
  });
  after(async () => {
    await Promise.all(orchestrators.map((o) => o.drain(0)));
    await rm(dir, { recursive: true, force: true });
  });

  it('boots exactly one process for 50 concurrent cold acquires', async () => {
    startsFile = path.join(dir, 'starts-single-flight');
    const o = orchestrator(programs([{ n: 1, env: { START_DELAY_MS: '200' } }]));
    const leases = await Promise.all(Array.from({ length: 50 }, () => o.acquire(hashOf(1))));
    assert.equal((await starts()).length, 1);
    assert.equal(new Set(leases.map((l) => JSON.stringify(l.endpoint))).size, 1);
    assert.equal(o.list()[0]!.in_flight, 50);
    for (const lease of leases) lease.release();
    assert.equal(o.list()[0]!.in_flight, 0);
    // Warm reuse: no new process.
    (await o.acquire(hashOf(1))).release();
    assert.equal((await starts()).length, 1);
  });

  it('is ready only once the program answers on its port', async () => {
    startsFile = path.join(dir, 'starts-ready');
    const o = orchestrator(programs([{ n: 2, env: { START_DELAY_MS: '400' } }]));
    const t0 = Date.now();
    const lease = await o.acquire(hashOf(2));
    assert.ok(Date.now() - t0 >= 400, 'acquire resolved before the program listened');
    const endpoint = lease.endpoint;
    assert.equal(endpoint.kind, 'tcp');
    const res = await fetch(`http://127.0.0.1:${endpoint.kind === 'tcp' ? endpoint.port : 0}/`);
    assert.equal(res.status, 200);
    lease.release();
  });

  it('stops an execution after idle_timeout, and boots a fresh one on the next request', async () => {
    startsFile = path.join(dir, 'starts-idle');
    const o = orchestrator(programs([{ n: 3 }]), { idleTimeoutMs: 300 });
    const lease = await o.acquire(hashOf(3));
    const pid = o.list()[0]!.pid!;
    lease.release();
    await until(() => o.list().length === 0, 30_000, 'idle stop');
    await until(() => !alive(pid), 30_000, 'process exit');
    (await o.acquire(hashOf(3))).release();
    assert.equal((await starts()).length, 2);
  });

  it('fails a boot that exceeds boot_timeout with 502 semantics and leaves no process', async () => {
    startsFile = path.join(dir, 'starts-timeout');
    // The timeout leaves the spawn (milliseconds, seconds on a loaded machine) time to
    // finish, so the execution has a process to kill.
    const o = orchestrator(programs([{ n: 4, env: { START_DELAY_MS: '600000' } }]), { bootTimeoutMs: 3_000 });
    await assert.rejects(o.acquire(hashOf(4)), (e: Error) => e instanceof BootFailedError && /timed out/.test(e.message));
    // The failure stays visible in the list (crash loops must be seen), with its reason and pid.
    const [failed] = o.list();
    assert.equal(failed?.state, 'failed');
    assert.match(failed?.last_error ?? '', /timed out/);
    assert.ok(failed?.pid);
    await until(() => !alive(failed.pid!), 30_000, 'the half-started program to be killed');
    // Backoff: the next request does not boot it again at once.
    await assert.rejects(o.acquire(hashOf(4)), /next attempt in/);
    assert.ok((await starts()).length <= 1);
  });

  it('removes a crashed execution at once; the next request boots a fresh one', async () => {
    startsFile = path.join(dir, 'starts-crash');
    const o = orchestrator(programs([{ n: 5 }]));
    const lease = await o.acquire(hashOf(5));
    const endpoint = lease.endpoint;
    lease.release();
    await fetch(`http://127.0.0.1:${endpoint.kind === 'tcp' ? endpoint.port : 0}/crash`).catch(() => {});
    await until(() => o.list()[0]?.state === 'failed', 30_000, 'crashed execution removal');
    assert.match(o.list()[0]!.last_error!, /exited unexpectedly \(code 7\)/);
    (await o.acquire(hashOf(5))).release();
    assert.equal((await starts()).length, 2);
    assert.deepEqual(o.list().map((v) => [v.state, v.restarts]), [['ready', 1]]);
  });

  it('drains: stops every execution and refuses new work', async () => {
    startsFile = path.join(dir, 'starts-drain');
    const o = orchestrator(programs([{ n: 9 }, { n: 10 }]));
    (await o.acquire(hashOf(9))).release();
    (await o.acquire(hashOf(10))).release();
    const pids = o.list().map((v) => v.pid!);
    await o.drain(1000);
    assert.equal(o.list().length, 0);
    for (const pid of pids) assert.equal(alive(pid), false);
    await assert.rejects(o.acquire(hashOf(9)), (e: Error) => e instanceof UnavailableError && e.reason === 'draining');
  });
});

