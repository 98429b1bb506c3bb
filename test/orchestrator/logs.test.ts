// Per-program output buffers: what a real process prints (stdout and stderr) and what
// a VMM process prints (serial console) reaches orchestrator.logs() and live followers,
// bounded by lines, bytes and programs.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger, setLogLevel } from '../../src/common/index.js';
import type { OrchestratorSettings } from '../../src/config/index.js';
import { ProcessDriver, waitForHttp, type OutputStream } from '../../src/drivers/index.js';
import { VmProcess } from '../../src/drivers/vm/index.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { Orchestrator, type LogEntry, type LogLimits, type ReadinessProbe } from '../../src/orchestrator/index.js';
import { LocalProgramSource } from '../../src/programs/index.js';
import { until } from '../helpers/node.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

const probe: ReadinessProbe = async (endpoint, { path: p, signal }) => {
  await waitForHttp(endpoint, { path: p, signal, deadline: Number.MAX_SAFE_INTEGER });
};

const hashOf = (n: number) => (0x10600 + n).toString(16).padStart(64, '0');

// Prints at start on both streams, then one stdout line per GET /say?text=.. request.
const TALKER = `
import http from 'node:http';
console.log('hello from stdout');
console.error('warning on stderr');
http.createServer((req, res) => {
  const text = new URL(req.url, 'http://x').searchParams.get('text');
  if (text) for (const line of text.split('|')) console.log(line);
  res.end('ok');
}).listen(Number(process.env.PORT), process.env.HOST);
`;

describe('program output buffers', () => {
  let dir: string;
  let script: string;
  const orchestrators: Orchestrator[] = [];

  function orchestrator(n: number[], logLimits?: LogLimits): Orchestrator {
    const settings: OrchestratorSettings = {
      driver: 'process', idleTimeoutMs: 60_000, bootTimeoutMs: 10_000, requestTimeoutMs: 30_000,
      maxVms: 64, memoryBudgetMib: 8192, holdQueue: 100, stopGraceMs: 2_000,
    };
    const programs = new LocalProgramSource(n.map((i) => ({
      hash: hashOf(i), name: `talker${i}`, command: [process.execPath, script], cwd: dir, env: {},
      memoryMib: 64, vcpus: 1, healthPath: '', requestTimeoutMs: 0,
    })));
    const o = new Orchestrator({ settings, programs, driver: new ProcessDriver({ stopGraceMs: 2000 }), probe, metrics: new MetricsRegistry(), logLimits });
    orchestrators.push(o);
    return o;
  }

  async function say(o: Orchestrator, n: number, text: string): Promise<void> {
    const lease = await o.acquire(hashOf(n));
    try {
      const endpoint = lease.endpoint;
      assert.equal(endpoint.kind, 'tcp');
      await (await fetch(`http://127.0.0.1:${endpoint.kind === 'tcp' ? endpoint.port : 0}/say?text=${encodeURIComponent(text)}`)).text();
    } finally {
      lease.release();
    }
  }

  const brief = (entries: LogEntry[]) => entries.map((e) => `${e.stream}:${e.line}`);

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-logs-'));
    script = path.join(dir, 'talker.mjs');
    await writeFile(script, TALKER);
  });
  after(async () => {
    await Promise.all(orchestrators.map((o) => o.drain(0)));
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps what a process prints on stdout and stderr, per program, with the execution and a timestamp', async () => {
    const o = orchestrator([1, 2]);
    const t0 = Date.now();
    await say(o, 1, 'first|second');
    await until(() => o.logs(hashOf(1)).length === 4, 5_000, 'four lines');
    const entries = o.logs(hashOf(1));
    // The two streams are separate pipes: only the order within stdout is defined.
    assert.deepEqual(brief(entries.filter((e) => e.stream === 'stdout')), ['stdout:hello from stdout', 'stdout:first', 'stdout:second']);
    assert.deepEqual(brief(entries.filter((e) => e.stream === 'stderr')), ['stderr:warning on stderr']);
    const execution = o.list().find((e) => e.hash === hashOf(1))!;
    for (const e of entries) {
      assert.ok(e.timestamp >= t0 && e.timestamp <= Date.now());
      assert.ok(execution.started_at <= new Date(e.timestamp).toISOString());
      assert.match(e.execution, /-\d+$/);
    }
    assert.deepEqual(o.logs(hashOf(2)), [], 'another program has its own buffer');
    assert.deepEqual(o.logs(hashOf(3)), []);
  });

  it('delivers new lines to followers until they unsubscribe, and keeps lines across a restart', async () => {
    const o = orchestrator([4]);
    await say(o, 4, '');
    const heard: string[] = [];
    const stop = o.followLogs(hashOf(4), (e) => heard.push(e.line));
    await say(o, 4, 'live one|live two');
    await until(() => heard.length === 2, 5_000, 'live lines');
    assert.deepEqual(heard, ['live one', 'live two']);
    stop();
    await say(o, 4, 'unheard');
    await until(() => o.logs(hashOf(4)).some((e) => e.line === 'unheard'), 5_000, 'buffered line');
    assert.deepEqual(heard, ['live one', 'live two']);
    const firstExecution = o.logs(hashOf(4))[0]!.execution;
    await o.stop(hashOf(4));
    await say(o, 4, 'after restart');
    await until(() => o.logs(hashOf(4)).some((e) => e.line === 'after restart'), 5_000, 'line of the new execution');
    const executions = new Set(o.logs(hashOf(4)).map((e) => e.execution));
    assert.equal(executions.size, 2);
    assert.ok(executions.has(firstExecution));
  });

  it('bounds the buffers by lines, bytes and programs', async () => {
    const o = orchestrator([5, 6, 7], { linesPerProgram: 5, bytesPerProgram: 100_000, programs: 2 });
    await say(o, 5, Array.from({ length: 12 }, (_, i) => `line ${i}`).join('|'));
    await until(() => o.logs(hashOf(5)).some((e) => e.line === 'line 11'), 5_000, 'the last line');
    assert.deepEqual(o.logs(hashOf(5)).map((e) => e.line), ['line 7', 'line 8', 'line 9', 'line 10', 'line 11']);
    await say(o, 6, 'six');
    await say(o, 7, 'seven');
    await until(() => o.logs(hashOf(7)).some((e) => e.line === 'seven'), 5_000, 'program 7 line');
    assert.deepEqual(o.logs(hashOf(5)), [], 'the least recently written program lost its buffer');
    assert.ok(o.logs(hashOf(6)).length > 0);

    const small = orchestrator([8], { linesPerProgram: 1000, bytesPerProgram: 200, programs: 8 });
    await say(small, 8, Array.from({ length: 20 }, (_, i) => `${'x'.repeat(20)} ${i}`).join('|'));
    await until(() => small.logs(hashOf(8)).some((e) => e.line.endsWith(' 19')), 5_000, 'the last line');
    const kept = small.logs(hashOf(8));
    assert.ok(kept.length < 10 && kept.length >= 2, `${kept.length} lines kept under 200 bytes`);
    assert.ok(kept.at(-1)!.line.endsWith(' 19'));
  });

  it('a VMM process feeds its console (stdout) and its own messages (stderr) to the same hook', async () => {
    const lines: Array<[OutputStream, string]> = [];
    const log = createLogger('test');
    const vm = await VmProcess.spawn('/bin/sh', ['-c', 'echo "[    0.000000] Linux version"; echo "qemu: warning" >&2; exec sleep 30'], {
      endpoint: { kind: 'tcp', host: '127.0.0.1', port: 1 }, stopGraceMs: 500, log, console: log,
      output: (stream, line) => lines.push([stream, line]),
    });
    try {
      await until(() => lines.length === 2, 5_000, 'console lines');
      assert.deepEqual(lines.filter(([s]) => s === 'stdout'), [['stdout', '[    0.000000] Linux version']]);
      assert.deepEqual(lines.filter(([s]) => s === 'stderr'), [['stderr', 'qemu: warning']]);
    } finally {
      await vm.stop();
    }
  });
});
