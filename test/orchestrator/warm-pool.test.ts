// The warm pool's accounting on a fake clock with a fake driver (docs/warm-pool.md):
// what fills it, who a warm VM goes to, that it is used once, that it never holds
// room a program needs (admission counts it and evicts it first), refills, retries.
// test/drivers/warm-pool.test.ts runs the same path with real qemu VMs.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setLogLevel } from '../../src/common/index.js';
import type { OrchestratorSettings } from '../../src/config/index.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { Orchestrator } from '../../src/orchestrator/index.js';
import { LocalProgramSource } from '../../src/programs/index.js';
import { FakeClock, settle } from '../helpers/clock.js';
import { FakeDriver, type FakeWarmBehaviour } from '../helpers/fake-driver.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

const hashOf = (n: number) => n.toString(16).padStart(64, '0');

function setup(options: { programs: Array<{ n: number; memoryMib: number }>; settings: Partial<OrchestratorSettings>; warm?: Partial<FakeWarmBehaviour> }) {
  const clock = new FakeClock();
  const driver = new FakeDriver(clock, { memoryMib: 64, ...options.warm });
  const source = new LocalProgramSource(options.programs.map((p) => ({
    hash: hashOf(p.n), name: `p${p.n}`, command: ['/nonexistent/never-run'], cwd: '/', env: {},
    memoryMib: p.memoryMib, vcpus: 1, healthPath: '', requestTimeoutMs: 0,
  })));
  const metrics = new MetricsRegistry();
  const o = new Orchestrator({
    settings: {
      driver: 'process', idleTimeoutMs: 60_000, bootTimeoutMs: 10_000, requestTimeoutMs: 30_000,
      maxVms: 64, memoryBudgetMib: 8192, holdQueue: 100, stopGraceMs: 2_000, ...options.settings,
    },
    programs: source, driver, probe: driver.probe, metrics, clock,
  });
  return { clock, driver, o, metrics };
}

describe('warm pool (fake clock, fake driver)', () => {
  it('fills to prewarm, serves a cold program from it, refills, and never gives a used VM to another program', async () => {
    const { clock, driver, o, metrics } = setup({ programs: [{ n: 1, memoryMib: 64 }, { n: 2, memoryMib: 64 }], settings: { prewarm: 2 }, warm: { bootMs: 500 } });
    o.prewarm();
    await clock.advance(500);
    assert.equal(driver.waitingWarm().length, 2);
    assert.match(metrics.render(), /aleph_edge_warm_vms\{state="ready"\} 2/);

    const lease = await o.acquire(hashOf(1));
    const [first] = driver.of(hashOf(1));
    assert.ok(first!.fromPool, 'the cold program was attached to a warm VM');
    assert.equal(first!.warm!.program?.hash, hashOf(1));
    assert.equal(driver.waitingWarm().length, 1, 'one left while the pool refills');
    await clock.advance(500);
    assert.equal(driver.waitingWarm().length, 2, 'refilled in the background');
    assert.equal(driver.warmBoots, 3);
    lease.release();

    (await o.acquire(hashOf(2))).release();
    const [second] = driver.of(hashOf(2));
    assert.ok(second!.fromPool);
    assert.notEqual(second!.warm, first!.warm, 'another VM: nothing of the first program is there');

    // The first program stops: its VM goes with it, never back to the pool.
    assert.equal(await o.stop(hashOf(1)), true);
    assert.equal(first!.warm!.running, false);
    await clock.advance(500);
    assert.ok(driver.warmVms.filter((vm) => vm.claimed).every((vm) => !driver.waitingWarm().includes(vm)));
    assert.equal(driver.waitingWarm().length, 2);
    assert.match(metrics.render(), /aleph_edge_warm_vm_attaches_total 2/);
  });

  it('boots a program that does not fit a warm VM, and leaves the pool as it is', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 1, memoryMib: 128 }], settings: { prewarm: 1 } });
    o.prewarm();
    await clock.advance(0);
    (await o.acquire(hashOf(1))).release();
    assert.equal(driver.of(hashOf(1))[0]!.fromPool, false);
    assert.equal(driver.waitingWarm().length, 1);
    assert.equal(driver.warmBoots, 1);
  });

  it('holds only what fits the budget and max_vms, counting running programs', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 1, memoryMib: 100 }], settings: { prewarm: 5, memoryBudgetMib: 200 } });
    o.prewarm();
    await clock.advance(0);
    assert.equal(driver.waitingWarm().length, 3, '3 x 64 MiB fit in 200 MiB, a fourth does not');
    // A program of 100 MiB evicts two warm VMs (64 + 64) to fit, and none comes back meanwhile.
    const lease = await o.acquire(hashOf(1));
    assert.equal(driver.waitingWarm().length, 1);
    await clock.advance(10_000);
    assert.equal(driver.waitingWarm().length, 1, '100 + 64 fit, 100 + 128 do not');
    lease.release();
    // Once it stops, the pool takes the room again.
    assert.equal(await o.stop(hashOf(1)), true);
    await clock.advance(0);
    assert.equal(driver.waitingWarm().length, 3);
    const max = setup({ programs: [], settings: { prewarm: 5, maxVms: 2 } });
    max.o.prewarm();
    await max.clock.advance(0);
    assert.equal(max.driver.waitingWarm().length, 2, 'max_vms bounds the pool too');
  });

  it('evicts warm VMs before any idle program, and booting ones before booted ones', async () => {
    const { clock, driver, o } = setup({
      programs: [{ n: 1, memoryMib: 128 }, { n: 2, memoryMib: 96 }],
      settings: { prewarm: 2, memoryBudgetMib: 256 },
      warm: { bootMs: 1_000 },
    });
    (await o.acquire(hashOf(1))).release(); // idle from now on, 128 MiB
    o.prewarm();
    await clock.advance(1_000);
    assert.equal(driver.waitingWarm().length, 2, '128 + 2 x 64 = 256');
    // 96 more: both warm VMs go (128 + 64 + 96 > 256), the idle program stays.
    (await o.acquire(hashOf(2))).release();
    assert.equal(driver.of(hashOf(1))[0]!.running, true, 'the idle program was not evicted');
    assert.equal(driver.warmVms.filter((vm) => vm.running).length, 0);
    assert.equal(driver.of(hashOf(2))[0]!.fromPool, false, 'a 96 MiB program does not fit a 64 MiB VM');

    // Room again: a warm VM boots; a program needing that room stops the boot, not a program.
    await o.stop(hashOf(2));
    await clock.advance(500);
    const bootsBefore = driver.warmBoots;
    assert.equal(bootsBefore, 4);
    (await o.acquire(hashOf(2))).release();
    await clock.advance(1_000);
    assert.equal(driver.warmVms.length, 2, 'the two boots under way were stopped before they finished');
    assert.equal(driver.of(hashOf(1))[0]!.running, true);
  });

  it('refills with the room a waiting boot leaves once admitted, not before it', async () => {
    const { clock, driver, o } = setup({
      programs: [{ n: 1, memoryMib: 128 }, { n: 2, memoryMib: 128 }, { n: 3, memoryMib: 64 }],
      settings: { prewarm: 1, memoryBudgetMib: 256 },
    });
    const busy1 = await o.acquire(hashOf(1));
    const busy2 = await o.acquire(hashOf(2));
    o.prewarm();
    await clock.advance(0);
    assert.equal(driver.waitingWarm().length, 0, 'no room: 128 + 128 = 256 (the one booted next to the first program was stopped for the second)');
    const boots = driver.warmBoots;
    const third = o.acquire(hashOf(3)); // waits: both programs serve a request
    await clock.advance(1_000);
    assert.equal(driver.warmBoots, boots);
    busy1.release(); // idle now: the waiting boot evicts it; the pool must not take that room first
    await clock.advance(0);
    const lease = await third;
    assert.equal(driver.of(hashOf(1))[0]!.running, false);
    assert.equal(driver.of(hashOf(3))[0]!.fromPool, false);
    assert.equal(driver.warmBoots, boots + 1, 'the 64 MiB left went to the pool, after the waiting boot got its room');
    assert.equal(driver.waitingWarm().length, 1);
    lease.release();
    busy2.release();
  });

  it('gives a warm VM back when the driver restores the program from a saved state instead', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 1, memoryMib: 64 }], settings: { prewarm: 1 } });
    driver.behave(hashOf(1), { restores: true });
    o.prewarm();
    await clock.advance(0);
    const [vm] = driver.waitingWarm();
    (await o.acquire(hashOf(1))).release();
    assert.equal(driver.of(hashOf(1))[0]!.fromPool, false);
    assert.equal(vm!.claimed, false);
    assert.deepEqual(driver.waitingWarm(), [vm], 'the unused VM is back in the pool');
    assert.equal(driver.warmBoots, 1);
  });

  it('gives an unused warm VM back when the boot fails before the driver starts', async () => {
    const { clock, driver, o } = setup({ programs: [{ n: 1, memoryMib: 64 }], settings: { prewarm: 1 } });
    driver.behave(hashOf(1), { startFails: 'no image' });
    o.prewarm();
    await clock.advance(0);
    await assert.rejects(o.acquire(hashOf(1)), /no image/);
    assert.equal(driver.waitingWarm().length, 1);
    assert.equal(driver.warmVms[0]!.claimed, false);
  });

  it('retries failed warm boots later, doubling the wait, and replaces a VM that died in the pool', async () => {
    const { clock, driver, o } = setup({ programs: [], settings: { prewarm: 1 }, warm: { fails: 'no runtime' } });
    o.prewarm();
    await clock.advance(0);
    assert.equal(driver.warmBoots, 1);
    await clock.advance(999);
    assert.equal(driver.warmBoots, 1, 'no retry loop');
    await clock.advance(1);
    assert.equal(driver.warmBoots, 2);
    await clock.advance(1_999);
    assert.equal(driver.warmBoots, 2);
    await clock.advance(1);
    assert.equal(driver.warmBoots, 3, 'the second retry waits twice as long');

    const ok = setup({ programs: [], settings: { prewarm: 1 } });
    ok.o.prewarm();
    await ok.clock.advance(0);
    ok.driver.waitingWarm()[0]!.crash();
    await settle();
    assert.equal(ok.driver.waitingWarm().length, 0);
    await ok.clock.advance(1_000);
    assert.equal(ok.driver.waitingWarm().length, 1, 'replaced after the retry delay');
  });

  it('shrinks on reload and stops every warm VM when draining', async () => {
    const { clock, driver, o } = setup({ programs: [], settings: { prewarm: 3 } });
    o.prewarm();
    await clock.advance(0);
    assert.equal(driver.waitingWarm().length, 3);
    o.updateSettings({
      driver: 'process', idleTimeoutMs: 60_000, bootTimeoutMs: 10_000, requestTimeoutMs: 30_000,
      maxVms: 64, memoryBudgetMib: 8192, holdQueue: 100, stopGraceMs: 2_000, prewarm: 1,
    });
    await settle();
    assert.equal(driver.waitingWarm().length, 1);
    await o.drain(1_000);
    assert.equal(driver.warmVms.filter((vm) => vm.running).length, 0);
    await clock.advance(5_000);
    assert.equal(driver.warmBoots, 3, 'nothing boots after a drain');
  });
});
