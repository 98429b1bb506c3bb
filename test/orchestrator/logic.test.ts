// The orchestrator's logic on a fake clock with a fake driver: every timer (boot
// timeout, idle reaper, backoff, stable period, drain deadline) fires when the test
// advances time, so these tests assert exact instants and never race real time.
// orchestrator.test.ts keeps the real-process checks for the process driver.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BootFailedError, NotFoundError, UnavailableError, setLogLevel } from '../../src/common/index.js';
import type { OrchestratorSettings } from '../../src/config/index.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { Orchestrator, type BackoffPolicy, type Lease } from '../../src/orchestrator/index.js';
import { LocalProgramSource } from '../../src/programs/index.js';
import { FakeClock, eventually, settle } from '../helpers/clock.js';
import { FakeDriver } from '../helpers/fake-driver.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

const hashOf = (n: number) => n.toString(16).padStart(64, '0');

interface Setup {
  programs: Array<{ n: number; memoryMib?: number }>;
  settings?: Partial<OrchestratorSettings>;
  backoff?: BackoffPolicy;
}

function setup({ programs, settings = {}, backoff }: Setup) {
  const clock = new FakeClock();
  const driver = new FakeDriver(clock);
  const source = new LocalProgramSource(programs.map((p) => ({
    hash: hashOf(p.n), name: `p${p.n}`, command: ['/nonexistent/never-run'], cwd: '/', env: {},
    memoryMib: p.memoryMib ?? 64, vcpus: 1, healthPath: '', requestTimeoutMs: 0,
  })));
  const o = new Orchestrator({
    settings: {
      driver: 'process', idleTimeoutMs: 60_000, bootTimeoutMs: 10_000, requestTimeoutMs: 30_000,
      maxVms: 64, memoryBudgetMib: 8192, holdQueue: 100, stopGraceMs: 2_000, ...settings,
    },
    programs: source, driver, probe: driver.probe, metrics: new MetricsRegistry(), backoff, clock,
  });
  const state = (n: number) => o.list().find((e) => e.hash === hashOf(n))?.state;
  return { clock, driver, o, state };
}

/** An acquire whose outcome the test can look at without awaiting it. */
function track(promise: Promise<Lease>) {
  const t: { lease?: Lease; error?: unknown; settled: boolean; promise: Promise<Lease> } = { settled: false, promise };
  promise.then((lease) => { t.lease = lease; t.settled = true; }, (error: unknown) => { t.error = error; t.settled = true; });
  return t;
}

const refusedFor = (pattern: RegExp) => (e: unknown) => e instanceof BootFailedError && pattern.test(e.message);

describe('orchestrator logic (fake clock, fake driver)', () => {
  it('boots one execution for 50 concurrent cold acquires, and answers them all once it is ready', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 1 }] });
    driver.behave(hashOf(1), { readyAfterMs: 200 });
    const acquires = Array.from({ length: 50 }, () => track(o.acquire(hashOf(1))));
    await clock.advance(199);
    assert.equal(acquires.filter((a) => a.settled).length, 0, 'nothing answered before the program is ready');
    assert.deepEqual(o.list().map((e) => [e.state, e.in_flight]), [['starting', 0]]);
    await clock.advance(1);
    assert.ok(acquires.every((a) => a.lease), 'every waiter got a lease');
    assert.equal(driver.starts(hashOf(1)), 1);
    assert.equal(new Set(acquires.map((a) => JSON.stringify(a.lease!.endpoint))).size, 1);
    assert.deepEqual(o.list().map((e) => [e.state, e.in_flight, e.requests]), [['ready', 50, 50]]);
    for (const a of acquires) a.lease!.release();
    assert.equal(o.list()[0]!.in_flight, 0);
    (await o.acquire(hashOf(1))).release();
    assert.equal(driver.starts(hashOf(1)), 1, 'warm reuse boots nothing');
    assert.equal(driver.of(hashOf(1))[0]!.readyCalls, 1, 'the instance heard once that it is ready (snapshots are saved then)');
  });

  it('leases a warm program synchronously, never boots through leaseIfReady, and stops leasing when draining', async () => {
    const { o, driver } = setup({ programs: [{ n: 2 }] });
    assert.equal(o.leaseIfReady(hashOf(2)), undefined);
    assert.equal(driver.starts(hashOf(2)), 0);
    (await o.acquire(hashOf(2))).release();
    const lease = o.leaseIfReady(hashOf(2));
    assert.ok(lease);
    assert.equal(o.list()[0]!.in_flight, 1);
    lease.release();
    lease.release(); // a second release is ignored
    assert.equal(o.list()[0]!.in_flight, 0);
    await o.drain(0);
    assert.equal(o.leaseIfReady(hashOf(2)), undefined);
    await assert.rejects(o.acquire(hashOf(2)), (e: unknown) => e instanceof UnavailableError && e.reason === 'draining');
  });

  it('stops an idle execution exactly idle_timeout after its last request, never while a request is in flight', async () => {
    const { clock, driver, o, state } = setup({ programs: [{ n: 3 }], settings: { idleTimeoutMs: 300 } });
    const lease = await o.acquire(hashOf(3));
    await clock.advance(10_000);
    assert.equal(state(3), 'ready', 'a request in flight keeps it');
    lease.release();
    await clock.advance(299);
    assert.equal(state(3), 'ready');
    await clock.advance(1);
    assert.equal(state(3), undefined);
    const [first] = driver.of(hashOf(3));
    assert.deepEqual(first!.exitInfo, { code: null, signal: 'SIGTERM', requested: true });
    (await o.acquire(hashOf(3))).release();
    assert.equal(driver.starts(hashOf(3)), 2, 'the next request boots a fresh one');
  });

  it('counts idleness from when a worker says the last request ended, and from the last of several', async () => {
    const { clock, o, state } = setup({ programs: [{ n: 4 }], settings: { idleTimeoutMs: 300 } });
    const a = await o.acquire(hashOf(4));
    await clock.advance(500);
    a.release(3, 200); // a worker's shared lease: three requests, the last ended 200 ms ago
    assert.equal(o.list()[0]!.requests, 3);
    await clock.advance(99);
    assert.equal(state(4), 'ready');
    await clock.advance(1);
    assert.equal(state(4), undefined);
    // A new request restarts the count.
    (await o.acquire(hashOf(4))).release();
    await clock.advance(200);
    (await o.acquire(hashOf(4))).release();
    await clock.advance(200);
    assert.equal(state(4), 'ready', '400 ms after boot but 200 ms after the last request');
    await clock.advance(100);
    assert.equal(state(4), undefined);
  });

  it('refuses an unknown program with NotFoundError and starts nothing', async () => {
    const { o, driver } = setup({ programs: [] });
    await assert.rejects(o.acquire(hashOf(99)), NotFoundError);
    assert.deepEqual(o.list(), []);
    assert.equal(driver.startCalls.length, 0);
  });

  it('fails a boot at boot_timeout, stops what it started, shows the failure and backs off', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 5 }], settings: { bootTimeoutMs: 300 }, backoff: { baseMs: 1_000, maxMs: 8_000 } });
    driver.behave(hashOf(5), { readyAfterMs: Number.POSITIVE_INFINITY });
    const acquire = track(o.acquire(hashOf(5)));
    await clock.advance(299);
    assert.equal(acquire.settled, false);
    await clock.advance(1);
    assert.ok(refusedFor(/boot timed out after 300 ms/)(acquire.error), String(acquire.error));
    assert.equal((acquire.error as BootFailedError).retryAfterS, 1);
    const [instance] = driver.of(hashOf(5));
    assert.equal(instance!.running, false, 'the half-started program is stopped');
    assert.equal(instance!.exitInfo?.requested, true);
    const [failed] = o.list();
    assert.equal(failed?.state, 'failed');
    assert.match(failed?.last_error ?? '', /timed out/);
    assert.equal(failed?.pid, instance!.pid);
    await assert.rejects(o.acquire(hashOf(5)), refusedFor(/timed out.*next attempt in 1s/));
    assert.equal(driver.starts(hashOf(5)), 1);
  });

  it('fails a boot whose program exits before it is ready, with the exit code', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 6 }] });
    driver.behave(hashOf(6), { readyAfterMs: Number.POSITIVE_INFINITY, exitAfterMs: { ms: 50, code: 3 } });
    const acquire = track(o.acquire(hashOf(6)));
    await clock.advance(50);
    assert.ok(refusedFor(/program exited during boot \(code 3\)/)(acquire.error), String(acquire.error));
    assert.equal(o.list()[0]?.state, 'failed');
  });

  it('backs off exponentially after repeated boot failures, capped, refusing without a boot meanwhile', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 7 }], backoff: { baseMs: 200, maxMs: 800 } });
    driver.behave(hashOf(7), { startFails: 'no such image' });
    await assert.rejects(o.acquire(hashOf(7)), refusedFor(/no such image/));
    let attempts = 1;
    for (const delay of [200, 400, 800, 800]) {
      await clock.advance(delay - 1);
      await assert.rejects(o.acquire(hashOf(7)), refusedFor(/no such image \(next attempt in 1s\)/));
      assert.equal(driver.starts(hashOf(7)), attempts, `refused without a boot ${delay - 1} ms after failure ${attempts}`);
      await clock.advance(1);
      await assert.rejects(o.acquire(hashOf(7)), refusedFor(/program failed to boot: no such image$/));
      attempts++;
      assert.equal(driver.starts(hashOf(7)), attempts);
    }
    assert.equal(o.list()[0]?.state, 'failed');
    assert.equal(o.list()[0]?.restarts, 4, 'every attempt counts');
  });

  it('backs off a program that keeps dying soon after becoming ready (crash loop), from the second death on', async () => {
    const { clock, driver, o, state } = setup({ programs: [{ n: 8 }], backoff: { baseMs: 400, maxMs: 5_000, stableMs: 5_000 } });
    driver.behave(hashOf(8), { exitAfterMs: { ms: 100, code: 3 } });
    (await o.acquire(hashOf(8))).release();
    await clock.advance(100);
    assert.equal(state(8), 'failed');
    assert.match(o.list()[0]!.last_error!, /exited unexpectedly \(code 3\)/);
    // First death: the next request boots a fresh one at once.
    (await o.acquire(hashOf(8))).release();
    assert.equal(driver.starts(hashOf(8)), 2);
    await clock.advance(100);
    // Second death in a row: refused without a boot for 400 ms.
    await assert.rejects(o.acquire(hashOf(8)), refusedFor(/exited unexpectedly.*next attempt in 1s/));
    await clock.advance(399);
    await assert.rejects(o.acquire(hashOf(8)), BootFailedError);
    assert.equal(driver.starts(hashOf(8)), 2);
    await clock.advance(1);
    (await o.acquire(hashOf(8))).release();
    assert.equal(driver.starts(hashOf(8)), 3);
    await clock.advance(100);
    // Third death: 800 ms now.
    await clock.advance(799);
    await assert.rejects(o.acquire(hashOf(8)), BootFailedError);
    assert.equal(driver.starts(hashOf(8)), 3);
    await clock.advance(1);
    (await o.acquire(hashOf(8))).release();
    assert.equal(driver.starts(hashOf(8)), 4);
  });

  it('forgets early deaths once an execution has stayed up stableMs; a late death is not counted', async () => {
    const { clock, driver, o, state } = setup({ programs: [{ n: 9 }], backoff: { baseMs: 300, maxMs: 5_000, stableMs: 400 } });
    const crashNow = async () => {
      (await o.acquire(hashOf(9))).release();
      driver.of(hashOf(9)).at(-1)!.crash(7);
      await eventually(() => state(9) === 'failed', 'the crash to be seen');
    };
    await crashNow();
    await crashNow(); // second early death in a row: backing off
    await assert.rejects(o.acquire(hashOf(9)), BootFailedError);
    await clock.advance(300);
    (await o.acquire(hashOf(9))).release();
    await clock.advance(399);
    driver.of(hashOf(9)).at(-1)!.crash(7); // 399 ms up: still early, third in a row
    await eventually(() => state(9) === 'failed', 'the crash to be seen');
    await assert.rejects(o.acquire(hashOf(9)), BootFailedError, 'backing off again (600 ms)');
    await clock.advance(600);
    (await o.acquire(hashOf(9))).release();
    await clock.advance(400); // up stableMs: the streak is over
    driver.of(hashOf(9)).at(-1)!.crash(7); // a late death: not counted
    await eventually(() => state(9) === 'failed', 'the crash to be seen');
    await crashNow(); // dies early: a first death again, so it is free
    (await o.acquire(hashOf(9))).release();
    assert.equal(driver.starts(hashOf(9)), 6);
  });

  it('evicts idle executions least-recently-used first under the memory budget', async () => {
    const { clock, driver, o } = setup({ programs: [12, 13, 14, 15].map((n) => ({ n, memoryMib: 100 })), settings: { memoryBudgetMib: 300 } });
    const use = async (n: number) => { (await o.acquire(hashOf(n))).release(); await clock.advance(10); };
    await use(12);
    await use(13);
    await use(14);
    await use(12); // 13 is now the least recently used
    await use(15);
    assert.deepEqual(o.list().map((e) => e.hash).sort(), [hashOf(12), hashOf(14), hashOf(15)]);
    assert.equal(driver.of(hashOf(13))[0]!.exitInfo?.requested, true);
  });

  it('never evicts a busy execution: waits for room, then refuses with capacity when only busy ones could make it', async () => {
    const { clock, driver, o } = setup({ programs: [6, 7, 8].map((n) => ({ n, memoryMib: 100 })), settings: { memoryBudgetMib: 200 } });
    (await o.acquire(hashOf(6))).release();
    const busy = await o.acquire(hashOf(7));
    (await o.acquire(hashOf(8))).release(); // evicts 6 (idle)
    assert.deepEqual(o.list().map((e) => e.hash).sort(), [hashOf(7), hashOf(8)]);
    const held = await o.acquire(hashOf(8));
    const refused = track(o.acquire(hashOf(6)));
    // The wait for room: ADMISSION_WAIT_MS, at most half of boot_timeout (10 s here).
    await clock.advance(4_999);
    assert.equal(refused.settled, false, 'a boot waits for room before it is refused');
    await clock.advance(1);
    await eventually(() => refused.settled, 'the refusal');
    assert.ok(refused.error instanceof UnavailableError && refused.error.reason === 'capacity' && refused.error.retryAfterS === 5, String(refused.error));
    assert.deepEqual(o.list().map((e) => e.hash).sort(), [hashOf(7), hashOf(8)]);
    assert.equal(driver.starts(hashOf(6)), 1, 'a refused boot starts nothing');
    busy.release();
    held.release();
  });

  it('counts executions against max_vms: a waiting boot takes the room a release frees; a program larger than the budget is refused outright', async () => {
    const { clock, o } = setup({ programs: [{ n: 20 }, { n: 21 }, { n: 22, memoryMib: 9000 }], settings: { maxVms: 1 } });
    const a = await o.acquire(hashOf(20));
    const waiting = track(o.acquire(hashOf(21)));
    await clock.advance(1_000);
    assert.equal(waiting.settled, false, 'no room while 20 serves a request');
    a.release();
    await eventually(() => waiting.settled, 'the waiting boot');
    assert.ok(waiting.lease, String(waiting.error));
    assert.deepEqual(o.list().map((e) => e.hash), [hashOf(21)], '20, idle now, was evicted for it');
    const refused = track(o.acquire(hashOf(20)));
    await clock.advance(5_000);
    await eventually(() => refused.settled, 'the refusal');
    assert.ok(refused.error instanceof UnavailableError && refused.error.reason === 'capacity', String(refused.error));
    waiting.lease.release();
    await assert.rejects(o.acquire(hashOf(22)), refusedFor(/needs 9000 MiB, more than this node's budget of 8192 MiB/));
  });

  it('waits for an evicted execution to stop before the new one starts (a stopping VM still holds its memory)', async () => {
    const { driver, o } = setup({ programs: [{ n: 23, memoryMib: 100 }, { n: 24, memoryMib: 100 }], settings: { memoryBudgetMib: 100 } });
    driver.behave(hashOf(23), { slowStop: true });
    (await o.acquire(hashOf(23))).release();
    const next = track(o.acquire(hashOf(24)));
    await eventually(() => driver.of(hashOf(23))[0]!.stopCalls === 1, 'the eviction');
    await settle();
    assert.equal(driver.starts(hashOf(24)), 0, 'not started while the victim stops');
    assert.equal(next.settled, false);
    driver.of(hashOf(23))[0]!.finishStop();
    await next.promise.then((lease) => lease.release());
    assert.equal(driver.starts(hashOf(24)), 1);
  });

  it('refuses waiters beyond hold_queue with 503 while a boot is in progress', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 11 }], settings: { holdQueue: 5 } });
    driver.behave(hashOf(11), { readyAfterMs: 300 });
    const acquires = Array.from({ length: 8 }, () => track(o.acquire(hashOf(11))));
    await settle();
    const refused = acquires.filter((a) => a.settled);
    assert.equal(refused.length, 3, 'refused at once, not after the boot');
    for (const a of refused) assert.ok(a.error instanceof UnavailableError && a.error.reason === 'queue_full' && a.error.retryAfterS > 0);
    await clock.advance(300);
    assert.equal(acquires.filter((a) => a.lease).length, 5);
    for (const a of acquires) a.lease?.release();
    assert.equal(driver.starts(hashOf(11)), 1);
  });

  it('stop lets in-flight requests finish while the next request boots a fresh execution', async () => {
    const { driver, o } = setup({ programs: [{ n: 17 }] });
    const busy = await o.acquire(hashOf(17));
    const stopped = o.stop(hashOf(17));
    await settle();
    assert.deepEqual(o.list().map((e) => e.state), ['draining']);
    assert.equal(driver.of(hashOf(17))[0]!.running, true);
    const fresh = await o.acquire(hashOf(17));
    assert.notDeepEqual(fresh.endpoint, busy.endpoint);
    assert.deepEqual(o.list().map((e) => e.state).sort(), ['draining', 'ready']);
    const again = o.stop(hashOf(17));
    busy.release();
    assert.equal(await stopped, true);
    assert.equal(driver.of(hashOf(17))[0]!.running, false);
    fresh.release();
    assert.equal(await again, true);
    assert.deepEqual(o.list(), []);
    assert.equal(await o.stop(hashOf(17)), false, 'nothing left to stop');
    assert.equal(driver.starts(hashOf(17)), 2);
  });

  it('a stop during boot cancels it: the waiter gets 503 draining, no backoff is recorded', async () => {
    const { driver, o } = setup({ programs: [{ n: 18 }] });
    driver.behave(hashOf(18), { readyAfterMs: Number.POSITIVE_INFINITY });
    const acquire = track(o.acquire(hashOf(18)));
    await eventually(() => driver.starts(hashOf(18)) === 1, 'the start');
    assert.equal(await o.stop(hashOf(18)), true);
    await eventually(() => acquire.settled, 'the waiter to be answered');
    assert.ok(acquire.error instanceof UnavailableError && acquire.error.reason === 'draining', String(acquire.error));
    assert.equal(driver.of(hashOf(18))[0]!.running, false);
    driver.behave(hashOf(18), {});
    (await o.acquire(hashOf(18))).release(); // no backoff: boots at once
    assert.equal(driver.starts(hashOf(18)), 2);
  });

  it('drains: in-flight requests may finish until the deadline, then everything is stopped', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 30 }, { n: 31 }, { n: 32 }] });
    (await o.acquire(hashOf(30))).release();
    const slow = await o.acquire(hashOf(31));
    const quick = await o.acquire(hashOf(32));
    let drained = false;
    const draining = o.drain(1_000).then(() => { drained = true; });
    await settle();
    assert.equal(driver.of(hashOf(30))[0]!.running, false, 'idle ones stop at once');
    await assert.rejects(o.acquire(hashOf(30)), (e: unknown) => e instanceof UnavailableError && e.reason === 'draining');
    quick.release();
    await eventually(() => !driver.of(hashOf(32))[0]!.running, 'a finished one to stop before the deadline');
    await clock.advance(999);
    assert.equal(driver.of(hashOf(31))[0]!.running, true, 'the slow one may still finish');
    assert.equal(drained, false);
    await clock.advance(1);
    await draining;
    assert.deepEqual(driver.running(), []);
    assert.deepEqual(o.list(), []);
    slow.release(); // late release after the stop: harmless
  });

  it('a hurried drain stops executions still serving requests at once', async () => {
    const { driver, o } = setup({ programs: [{ n: 33 }] });
    const busy = await o.acquire(hashOf(33));
    const draining = o.drain(60_000);
    await settle();
    assert.equal(driver.running().length, 1);
    o.hurry();
    await draining;
    assert.deepEqual(driver.running(), []);
    busy.release();
  });

  it('a crash removes the execution at once; requests in flight release harmlessly; the next request boots afresh', async () => {
    const { driver, o, state } = setup({ programs: [{ n: 34 }] });
    const lease = await o.acquire(hashOf(34));
    driver.of(hashOf(34))[0]!.crash(7);
    await eventually(() => state(34) === 'failed', 'the crash');
    assert.match(o.list()[0]!.last_error!, /exited unexpectedly \(code 7\)/);
    assert.equal(o.leaseIfReady(hashOf(34)), undefined);
    lease.release();
    (await o.acquire(hashOf(34))).release();
    assert.deepEqual(o.list().map((e) => [e.state, e.restarts]), [['ready', 1]]);
  });

  it('replaces an execution whose program refuses connections (fatal failure), not on a non-fatal one', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 35 }] });
    const lease = await o.acquire(hashOf(35));
    lease.reportFailure('upstream reset', false);
    assert.equal(o.list()[0]!.state, 'ready');
    lease.reportFailure('connection refused', true);
    await settle();
    assert.equal(o.list()[0]!.state, 'draining', 'no new requests reach it');
    await clock.advance(0); // its deadline is now: the in-flight exchange is cut
    await eventually(() => !driver.of(hashOf(35))[0]!.running, 'the unhealthy execution to stop');
    lease.release();
    (await o.acquire(hashOf(35))).release();
    assert.equal(driver.starts(hashOf(35)), 2);
  });

  it('a waiter that gives up (client gone) is answered at once and the boot goes on for the others', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 36 }] });
    driver.behave(hashOf(36), { readyAfterMs: 100 });
    const gone = new AbortController();
    const leaving = track(o.acquire(hashOf(36), gone.signal));
    const staying = track(o.acquire(hashOf(36)));
    await settle();
    gone.abort(new Error('client closed'));
    await eventually(() => leaving.settled, 'the aborted waiter');
    assert.match(String(leaving.error), /client closed/);
    await clock.advance(100);
    assert.ok(staying.lease);
    staying.lease.release();
    assert.equal(driver.starts(hashOf(36)), 1);
  });
});
