import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setLogLevel } from '../../src/common/index.js';
import { defaultDriversSettings } from '../../src/config/index.js';
import { createDriver, DriverStartError, ProcessDriver, waitForHttp, type Instance } from '../../src/drivers/index.js';
import { captureLogs, examplePath, httpGet, isGone, makeProgram, nextSlot, nodeProgram, tempDir, waitGone } from './helpers.js';

setLogLevel('silent');

const GRACE_MS = 300;

async function ready(instance: Instance): Promise<void> {
  await waitForHttp(instance.endpoint, { path: '', deadline: Date.now() + 10_000 });
}

describe('ProcessDriver', () => {
  const driver = new ProcessDriver({ stopGraceMs: GRACE_MS });
  let dir: Awaited<ReturnType<typeof tempDir>>;

  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await dir.remove();
  });

  it('runs the counter example, then stops it on request', async () => {
    const instance = await driver.start(nodeProgram(examplePath('counter')), nextSlot());
    assert.equal(instance.endpoint.kind, 'tcp');
    assert.ok(instance.endpoint.kind === 'tcp' && instance.endpoint.host === '127.0.0.1' && instance.endpoint.port > 0);
    assert.ok(instance.pid !== undefined);
    await ready(instance);

    assert.equal((await httpGet(instance.endpoint, '/state/increment')).body, '1');
    assert.equal((await httpGet(instance.endpoint, '/state/increment')).body, '2');

    const first = instance.stop();
    assert.equal(instance.stop(), first, 'stop() is idempotent and returns the same promise');
    await first;
    const exit = await instance.exited;
    // The example handles SIGTERM and exits 0.
    assert.deepEqual(exit, { code: 0, signal: null, requested: true });
    assert.throws(() => process.kill(instance.pid!, 0), { code: 'ESRCH' });
  });

  it('SIGKILLs a program that ignores SIGTERM after the grace period', async () => {
    const script = await dir.script(
      'stubborn.js',
      `process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
       setInterval(() => {}, 1000);
       console.log('armed');`,
    );
    const logs = captureLogs('program');
    try {
      const program = nodeProgram(script);
      const instance = await driver.start(program, nextSlot());
      await logs.waitFor((r) => r.message === 'armed' && r.fields.hash === program.hash.slice(0, 12));
      const t0 = performance.now();
      await instance.stop();
      const elapsed = performance.now() - t0;
      const exit = await instance.exited;
      assert.deepEqual(exit, { code: null, signal: 'SIGKILL', requested: true });
      assert.ok(elapsed >= GRACE_MS - 10, `killed after ${elapsed} ms, before the grace period`);
      assert.throws(() => process.kill(instance.pid!, 0), { code: 'ESRCH' });
      await logs.waitFor((r) => r.message === 'ignoring SIGTERM' && r.fields.stream === 'stdout');
    } finally {
      logs.stop();
    }
  });

  for (const stubbornGrandchild of [false, true]) {
    it(`stop() kills the whole process group (grandchild ${stubbornGrandchild ? 'ignores' : 'obeys'} SIGTERM)`, async () => {
      const grandchildCode =
        (stubbornGrandchild ? `process.on('SIGTERM', () => {});` : '') + `setInterval(() => {}, 1000); console.log('grandchild ' + process.pid);`;
      const script = await dir.script(
        `parent-${stubbornGrandchild}.js`,
        `const { spawn } = require('node:child_process');
         // Shares our stdout, so the driver's pipe stays open until the grandchild dies too.
         spawn(process.execPath, ['-e', ${JSON.stringify(grandchildCode)}], { stdio: ['ignore', 'inherit', 'inherit'] });
         setInterval(() => {}, 1000);`,
      );
      const logs = captureLogs('program');
      try {
        const instance = await driver.start(nodeProgram(script), nextSlot());
        const record = await logs.waitFor((r) => r.message.startsWith('grandchild '));
        const grandchild = Number(record.message.split(' ')[1]);
        assert.ok(grandchild > 0 && !isGone(grandchild));
        const t0 = performance.now();
        await instance.stop();
        const elapsed = performance.now() - t0;
        assert.equal((await instance.exited).requested, true);
        assert.ok(isGone(instance.pid!));
        // The grandchild was killed; init may take a moment to reap the zombie.
        assert.ok(await waitGone(grandchild), `grandchild ${grandchild} survived stop()`);
        if (stubbornGrandchild) assert.ok(elapsed >= GRACE_MS - 10, 'SIGKILL only after the grace period');
      } finally {
        logs.stop();
      }
    });
  }

  it('reports an unexpected exit with its code', async () => {
    const script = await dir.script('exit3.js', `setTimeout(() => process.exit(3), 50);`);
    const logs = captureLogs('driver.process');
    try {
      const instance = await driver.start(nodeProgram(script), nextSlot());
      assert.deepEqual(await instance.exited, { code: 3, signal: null, requested: false });
      const warning = await logs.waitFor((r) => r.message === 'program exited unexpectedly');
      assert.equal(warning.level, 'warn');
      assert.equal(warning.fields.code, 3);
      await instance.stop(); // harmless after the fact
      assert.equal((await instance.exited).requested, false);
    } finally {
      logs.stop();
    }
  });

  it('rejects with DriverStartError when the command does not exist', async () => {
    await assert.rejects(driver.start(makeProgram(['definitely-not-a-command-4711']), nextSlot()), (err: unknown) => {
      assert.ok(err instanceof DriverStartError);
      assert.equal(err.message, 'command not found: definitely-not-a-command-4711');
      return true;
    });
  });

  it('rejects with DriverStartError when cwd does not exist or the file is not executable', async () => {
    await assert.rejects(driver.start(nodeProgram(examplePath('counter'), { cwd: '/nonexistent/dir' }), nextSlot()), {
      name: 'DriverStartError',
      message: 'cwd does not exist',
    });
    const notExecutable = await dir.script('plain.txt', 'hello');
    await assert.rejects(driver.start(makeProgram([notExecutable]), nextSlot()), {
      name: 'DriverStartError',
      message: `permission denied: ${notExecutable}`,
    });
    await assert.rejects(driver.start(makeProgram([]), nextSlot()), { name: 'DriverStartError', message: 'empty command' });
  });

  it('gives programs a minimal environment: no secrets from the node', async () => {
    process.env.ALEPH_TEST_SECRET = 'hunter2';
    const script = await dir.script('env.js', `console.log('ENV ' + JSON.stringify(process.env));`);
    const logs = captureLogs('program');
    try {
      const instance = await driver.start(nodeProgram(script, { env: { GREETING: 'hi', PORT: 'ignored' } }), nextSlot());
      const record = await logs.waitFor((r) => r.message.startsWith('ENV '));
      const env = JSON.parse(record.message.slice(4)) as Record<string, string>;
      assert.equal(env.ALEPH_TEST_SECRET, undefined);
      assert.equal(env.GREETING, 'hi');
      assert.equal(env.HOST, '127.0.0.1');
      assert.ok(instance.endpoint.kind === 'tcp');
      assert.equal(env.PORT, String(instance.endpoint.port), 'PORT is ours, not the program env');
      assert.equal(env.PATH, process.env.PATH);
      const allowed = new Set(['PATH', 'HOME', 'LANG', 'GREETING', 'PORT', 'HOST']);
      // Node itself may add a few variables to its own environment at start.
      const extra = Object.keys(env).filter((k) => !allowed.has(k) && !k.startsWith('NODE_') && k !== 'LC_CTYPE');
      assert.deepEqual(extra, []);
      await instance.exited;
    } finally {
      delete process.env.ALEPH_TEST_SECRET;
      logs.stop();
    }
  });

  it('bounds memory and log volume when a program floods its output', async () => {
    // 50 MB of 100-byte lines, plus one 1 MB line, as fast as the pipe takes it.
    const script = await dir.script(
      'flood.js',
      `const line = Buffer.alloc(100, 'x'); line[99] = 10;
       const chunk = Buffer.concat(Array.from({ length: 10486 }, () => line)); // ~1 MB
       const fs = require('node:fs');
       fs.writeSync(1, Buffer.concat([Buffer.alloc(1 << 20, 'y'), Buffer.from('\\n')]));
       for (let i = 0; i < 50; i++) fs.writeSync(1, chunk);
       fs.writeSync(2, 'done\\n');`,
    );
    // Scripts in the temp dir are CommonJS (no package.json there says otherwise).
    const logs = captureLogs('program');
    try {
      const rssBefore = process.memoryUsage().rss;
      let peakRss = rssBefore;
      const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 5);
      const t0 = performance.now();
      const instance = await driver.start(nodeProgram(script), nextSlot());
      await instance.exited;
      await logs.waitFor((r) => r.message === 'program output rate-limited, lines dropped');
      clearInterval(sampler);
      const seconds = (performance.now() - t0) / 1000;
      const growthMb = (peakRss - rssBefore) / 2 ** 20;
      if (process.env.DEBUG_FLOOD) console.log({ growthMb, seconds });
      assert.ok(growthMb < 32, `RSS grew by ${growthMb.toFixed(1)} MB during a 50 MB flood`);

      const lines = logs.records.filter((r) => r.level === 'info');
      // Burst (1000) plus 200 lines/s, with slack for timing.
      assert.ok(lines.length <= 1000 + 200 * seconds + 50, `${lines.length} lines logged in ${seconds.toFixed(2)} s`);
      const longLine = lines.find((r) => r.message.startsWith('yyyy'));
      assert.ok(longLine, 'the long line was logged');
      assert.ok(longLine.message.length <= 4096 + 20, 'and truncated');
      assert.ok(longLine.message.endsWith('[truncated]'));
      // Drops are reported in batches as the output is read: wait for the last ones.
      const droppedSoFar = () => logs.records
        .filter((r) => r.message === 'program output rate-limited, lines dropped')
        .reduce((sum, r) => sum + Number(r.fields.dropped), 0);
      const deadline = performance.now() + 5_000;
      while (droppedSoFar() <= 400_000 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const dropped = droppedSoFar();
      assert.ok(dropped > 400_000, `dropped ${dropped}`);
    } finally {
      logs.stop();
    }

    // The driver is still fine afterwards.
    const counter = await driver.start(nodeProgram(examplePath('counter')), nextSlot());
    await ready(counter);
    assert.equal((await httpGet(counter.endpoint, '/state/increment')).body, '1');
    await counter.stop();
  });

  it('gives each program its own port', async () => {
    const [a, b] = await Promise.all([
      driver.start(nodeProgram(examplePath('counter')), nextSlot()),
      driver.start(nodeProgram(examplePath('counter')), nextSlot()),
    ]);
    assert.ok(a.endpoint.kind === 'tcp' && b.endpoint.kind === 'tcp' && a.endpoint.port !== b.endpoint.port);
    await Promise.all([ready(a), ready(b)]);
    assert.equal((await httpGet(a.endpoint, '/state/increment')).body, '1');
    assert.equal((await httpGet(b.endpoint, '/state/increment')).body, '1');
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe('createDriver', () => {
  it('builds the process driver', () => {
    const driver = createDriver('process', { stopGraceMs: 100 });
    assert.ok(driver instanceof ProcessDriver);
    assert.equal(driver.name, 'process');
  });

  it('refuses VM drivers without a kernel and image, saying what is missing', () => {
    // qemu with neither is a node for instances only (they boot their own kernel); one without the other is a mistake.
    const drivers = defaultDriversSettings();
    assert.throws(() => createDriver('qemu', { stopGraceMs: 100, drivers: { ...drivers, qemu: { ...drivers.qemu, kernel: '/nonexistent/vmlinuz' } } }), /drivers\.qemu\.initramfs is not set/);
    assert.equal(createDriver('qemu', { stopGraceMs: 100 }).name, 'qemu');
    assert.throws(() => createDriver('firecracker', { stopGraceMs: 100 }), /drivers\.firecracker\.kernel is not set/);
  });
});
