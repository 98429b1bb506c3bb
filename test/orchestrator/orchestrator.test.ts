import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BootFailedError, NotFoundError, UnavailableError, setLogLevel } from '../../src/common/index.js';
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

  it('leases a warm program synchronously (leaseIfReady), never boots through it, and stops leasing when draining', async () => {
    const o = orchestrator(programs([{ n: 40 }]));
    assert.equal(o.leaseIfReady(hashOf(40)), undefined, 'nothing booted yet');
    assert.equal(o.list().length, 0, 'leaseIfReady does not boot');
    (await o.acquire(hashOf(40))).release();
    const lease = o.leaseIfReady(hashOf(40));
    assert.ok(lease, 'warm: leased without waiting');
    assert.equal(o.list().find((e) => e.hash === hashOf(40))?.in_flight, 1);
    lease.release();
    assert.equal(o.list().find((e) => e.hash === hashOf(40))?.in_flight, 0);
    await o.drain(0);
    assert.equal(o.leaseIfReady(hashOf(40)), undefined);
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
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(o.list().length, 1, 'an execution with a request in flight is never reaped');
    lease.release();
    await until(() => o.list().length === 0, 3000, 'idle stop');
    await until(() => !alive(pid), 3000, 'process exit');
    (await o.acquire(hashOf(3))).release();
    assert.equal((await starts()).length, 2);
  });

  it('rejects an unknown program with NotFoundError and starts nothing', async () => {
    startsFile = path.join(dir, 'starts-unknown');
    const o = orchestrator(programs([]));
    await assert.rejects(o.acquire(hashOf(99)), NotFoundError);
    assert.equal(o.list().length, 0);
  });

  it('fails a boot that exceeds boot_timeout with 502 semantics and leaves no process', async () => {
    startsFile = path.join(dir, 'starts-timeout');
    const o = orchestrator(programs([{ n: 4, env: { START_DELAY_MS: '60000' } }]), { bootTimeoutMs: 300 });
    await assert.rejects(o.acquire(hashOf(4)), (e: Error) => e instanceof BootFailedError && /timed out/.test(e.message));
    // The failure stays visible in the list (crash loops must be seen), with its reason and pid.
    const [failed] = o.list();
    assert.equal(failed?.state, 'failed');
    assert.match(failed?.last_error ?? '', /timed out/);
    assert.ok(failed?.pid);
    await until(() => !alive(failed.pid!), 3000, 'the half-started program to be killed');
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
    await until(() => o.list()[0]?.state === 'failed', 3000, 'crashed execution removal');
    assert.match(o.list()[0]!.last_error!, /exited unexpectedly \(code 7\)/);
    (await o.acquire(hashOf(5))).release();
    assert.equal((await starts()).length, 2);
    assert.deepEqual(o.list().map((v) => [v.state, v.restarts]), [['ready', 1]]);
  });

  it('evicts the least recently used idle execution under the memory budget, never a busy one', async () => {
    startsFile = path.join(dir, 'starts-evict');
    const o = orchestrator(programs([{ n: 6, memoryMib: 100 }, { n: 7, memoryMib: 100 }, { n: 8, memoryMib: 100 }]), { memoryBudgetMib: 200 });
    (await o.acquire(hashOf(6))).release();
    await new Promise((r) => setTimeout(r, 20));
    const busy = await o.acquire(hashOf(7));
    (await o.acquire(hashOf(8))).release(); // evicts 6 (idle, LRU)
    assert.deepEqual(o.list().map((v) => v.hash).sort(), [hashOf(7), hashOf(8)]);
    const held = await o.acquire(hashOf(8));
    // 6 wants in: 7 and 8 are both busy -> refused, nothing evicted.
    await assert.rejects(o.acquire(hashOf(6)), (e: Error) => e instanceof UnavailableError && e.reason === 'capacity');
    assert.deepEqual(o.list().map((v) => v.hash).sort(), [hashOf(7), hashOf(8)]);
    busy.release();
    held.release();
  });

  it('refuses waiters beyond hold_queue with 503 while a boot is in progress', async () => {
    startsFile = path.join(dir, 'starts-queue');
    const o = orchestrator(programs([{ n: 11, env: { START_DELAY_MS: '300' } }]), { holdQueue: 5 });
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => o.acquire(hashOf(11))));
    const refused = results.filter((r) => r.status === 'rejected');
    assert.equal(refused.length, 3);
    for (const r of refused) {
      const error = (r as PromiseRejectedResult).reason as UnavailableError;
      assert.ok(error instanceof UnavailableError && error.reason === 'queue_full' && error.retryAfterS > 0);
    }
    for (const r of results) if (r.status === 'fulfilled') r.value.release();
    assert.equal((await starts()).length, 1);
  });

  it('evicts in least-recently-used order', async () => {
    startsFile = path.join(dir, 'starts-lru');
    const o = orchestrator(programs([12, 13, 14, 15].map((n) => ({ n, memoryMib: 100 }))), { memoryBudgetMib: 300 });
    const use = async (n: number) => { (await o.acquire(hashOf(n))).release(); await new Promise((r) => setTimeout(r, 15)); };
    await use(12);
    await use(13);
    await use(14);
    await use(12); // 13 is now the least recently used
    await use(15);
    assert.deepEqual(o.list().map((v) => v.hash).sort(), [hashOf(12), hashOf(14), hashOf(15)]);
  });

  it('backs off exponentially after repeated boot failures', async () => {
    startsFile = path.join(dir, 'starts-backoff');
    const o = new Orchestrator({
      settings: settings(), programs: programs([{ n: 16, env: { EXIT_AT_START: '1' } }]),
      driver: new ProcessDriver({ stopGraceMs: 500 }), probe, metrics: new MetricsRegistry(), backoff: { baseMs: 200, maxMs: 800 },
    });
    orchestrators.push(o);
    const deadline = Date.now() + 1800;
    let refusedWithoutBoot = 0;
    while (Date.now() < deadline) {
      const before = (await starts()).length;
      await assert.rejects(o.acquire(hashOf(16)), BootFailedError);
      if ((await starts()).length === before) refusedWithoutBoot++;
      await new Promise((r) => setTimeout(r, 20));
    }
    const times = (await starts()).map((line) => Number(line.split(' ')[1]));
    // 1.8 s with delays 200, 400, 800 ms: 3 or 4 attempts, not one per request.
    assert.ok(times.length >= 3 && times.length <= 4, `attempts: ${times.length}`);
    assert.ok(refusedWithoutBoot > 10);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert.ok(gaps[0]! >= 200 && gaps[1]! >= 400, `gaps ${gaps.join(',')}`);
    assert.equal(o.list()[0]?.state, 'failed');
  });

  it('backs off a program that keeps dying soon after becoming ready (crash loop), from the second death on', async () => {
    startsFile = path.join(dir, 'starts-crashloop');
    const o = new Orchestrator({
      settings: settings(), programs: programs([{ n: 41, env: { EXIT_AFTER_READY_MS: '100' } }]),
      driver: new ProcessDriver({ stopGraceMs: 500 }), probe, metrics: new MetricsRegistry(),
      backoff: { baseMs: 400, maxMs: 5_000, stableMs: 5_000 },
    });
    orchestrators.push(o);
    const crashed = () => until(() => o.list().find((v) => v.hash === hashOf(41))?.state === 'failed', 3000, 'the crash');
    (await o.acquire(hashOf(41))).release();
    await crashed();
    // First death: the next request boots a fresh one at once (DESIGN.md).
    (await o.acquire(hashOf(41))).release();
    assert.equal((await starts()).length, 2);
    await crashed();
    // Second death in a row: refused without a boot, with the wait in the message.
    await assert.rejects(o.acquire(hashOf(41)), (e: Error) => e instanceof BootFailedError && /exited unexpectedly.*next attempt in/.test(e.message));
    assert.equal((await starts()).length, 2);
    await new Promise((r) => setTimeout(r, 450));
    (await o.acquire(hashOf(41))).release(); // 400 ms passed: boots again
    assert.equal((await starts()).length, 3);
    await crashed();
    // Third death: 800 ms now, so still refused after 450 ms.
    await new Promise((r) => setTimeout(r, 450));
    await assert.rejects(o.acquire(hashOf(41)), BootFailedError);
    assert.equal((await starts()).length, 3);
  });

  it('forgets early deaths once an execution has stayed up stableMs', async () => {
    startsFile = path.join(dir, 'starts-stable');
    const o = new Orchestrator({
      settings: settings(), programs: programs([{ n: 42 }]),
      driver: new ProcessDriver({ stopGraceMs: 500 }), probe, metrics: new MetricsRegistry(),
      backoff: { baseMs: 300, maxMs: 5_000, stableMs: 400 },
    });
    orchestrators.push(o);
    const crash = async () => {
      const lease = await o.acquire(hashOf(42));
      const { endpoint } = lease;
      lease.release();
      await fetch(`http://127.0.0.1:${endpoint.kind === 'tcp' ? endpoint.port : 0}/crash`).catch(() => {});
      await until(() => o.list().find((v) => v.hash === hashOf(42))?.state === 'failed', 3000, 'the crash');
    };
    await crash();
    await crash(); // second early death in a row: backing off
    await assert.rejects(o.acquire(hashOf(42)), BootFailedError);
    await new Promise((r) => setTimeout(r, 350));
    (await o.acquire(hashOf(42))).release();
    await new Promise((r) => setTimeout(r, 500)); // up longer than stableMs: the streak is over
    await crash(); // a late death: not counted
    await crash(); // the next execution dies early: a first death again, so it is free
    (await o.acquire(hashOf(42))).release();
    assert.equal((await starts()).length, 5);
  });

  it('stop lets in-flight requests finish while the next request boots a fresh execution', async () => {
    startsFile = path.join(dir, 'starts-retire');
    const o = orchestrator(programs([{ n: 17 }]));
    const busy = await o.acquire(hashOf(17));
    const stopped = o.stop(hashOf(17));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(o.list().map((v) => v.state), ['draining']);
    const fresh = await o.acquire(hashOf(17));
    assert.notDeepEqual(fresh.endpoint, busy.endpoint);
    assert.deepEqual(o.list().map((v) => v.state).sort(), ['draining', 'ready']);
    // Stopping again now stops the fresh one (it too finishes its request first).
    const again = o.stop(hashOf(17));
    busy.release();
    await stopped;
    fresh.release();
    assert.equal(await again, true);
    assert.deepEqual(o.list().map((v) => v.state), []);
    assert.equal((await starts()).length, 2);
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

