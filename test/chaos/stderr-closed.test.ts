// Issue 14 case 2: the reader of the node's stderr goes away (journald restarting,
// `aleph-edge run 2>&1 | head`). The node's stderr is a FIFO here, read by `cat`:
// when that reader exits, every log write fails with EPIPE; when a new reader opens
// the FIFO, the same descriptor is writable again (as a reconnected journal stream).

import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { open, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, fixtureProgram } from '../helpers/paths.js';
import { programHash, until } from '../helpers/node.js';
import { childrenOf, get, processesMatching, startCliNode, type CliNode } from './harness.js';

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** utime + stime of a process, in clock ticks. */
function cpuTicks(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

interface Reader {
  child: ChildProcess;
  text(): string;
}

function startReader(fifo: string): Reader {
  const child = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => (text += chunk));
  return { child, text: () => text };
}

function metrics(socket: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: socket, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

function sumOf(text: string, family: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${family} `) || line.startsWith(`${family}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('a closed stderr (workers = 2)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aleph-edge-stderr-'));
  const fifo = path.join(dir, 'stderr.fifo');
  const hash = programHash('sockets');
  let node: CliNode;
  let reader: Reader;

  before(async () => {
    execFileSync('mkfifo', [fifo]);
    reader = startReader(fifo);
    // Opening for writing waits for the reader; the test holds no read end.
    const handle = await open(fifo, 'w');
    try {
      node = await startCliNode({
        dir, workers: 2, stderrFd: handle.fd, env: { ALEPH_EDGE_LOG: 'info' },
        programs: [{ name: 'sockets', script: fixtureProgram('sockets.js') }],
      });
    } finally {
      await handle.close();
    }
  });
  after(async () => {
    await node?.stop();
    reader?.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps serving at idle CPU without restarting workers, counts the lost lines, and logs again once stderr is read', async () => {
    assert.equal((await get(node, `/vm/${hash}/`)).status, 200);
    await until(() => reader.text().includes(`/vm/${hash}/`), 5000, 'the access log line');
    const primary = node.child.pid!;
    const workers = childrenOf(primary).filter((pid) => processesMatching(CLI).includes(pid)).sort();
    assert.equal(workers.length, 2);

    // The reader goes away: from now on every log write fails with EPIPE.
    const gone = new Promise((resolve) => reader.child.once('exit', resolve));
    reader.child.kill('SIGKILL');
    await gone;
    for (let i = 0; i < 20; i++) assert.equal((await get(node, `/vm/${hash}/?during=${i}`)).status, 200);

    // 10 s with a request a second: the node serves, and no process of it spins.
    const pids = [primary, ...workers];
    const start = pids.map(cpuTicks);
    const started = Date.now();
    for (let i = 0; i < 10; i++) {
      assert.equal((await get(node, `/vm/${hash}/?idle=${i}`)).status, 200);
      await sleep(1000);
    }
    const seconds = (Date.now() - started) / 1000;
    const usage = pids.map((pid, i) => (cpuTicks(pid) - start[i]!) / CLK_TCK / seconds);
    process.stdout.write(`# cpu over ${seconds.toFixed(1)} s with stderr closed: ${usage.map((u) => `${(u * 100).toFixed(1)}%`).join(' ')} (primary, workers)\n`);
    for (const [i, u] of usage.entries()) assert.ok(u < 0.05, `process ${pids[i]} used ${(u * 100).toFixed(1)} % CPU`);
    assert.deepEqual(childrenOf(primary).filter((pid) => processesMatching(CLI).includes(pid)).sort(), workers, 'workers were restarted');
    assert.equal(node.child.exitCode, null);

    // Dropped lines are counted, not thrown.
    const dropped = sumOf(await metrics(node.socket), 'aleph_edge_log_lines_dropped_total');
    assert.ok(dropped >= 30, `dropped ${dropped}`);

    // A new reader: logging resumes on the same descriptor, saying what was lost.
    const next = startReader(fifo);
    try {
      await until(async () => {
        await get(node, `/vm/${hash}/?after=1`);
        return next.text().includes(`/vm/${hash}/?after=1`);
      }, 10_000, 'log lines on the new reader');
      assert.match(next.text(), /log lines dropped while stderr was not writable/);
    } finally {
      assert.equal(await node.stop(), 0);
      next.child.kill('SIGKILL');
    }
  });
});
