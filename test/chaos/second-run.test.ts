// Issue 14 case 3: a second `aleph-edge run` on the same configuration and state
// directory while the first one runs. It must refuse before any clean-up (no
// program killed, no socket or record removed); a lock left by a SIGKILLed node is
// taken over, and only then are that node's orphans reaped.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { CLI, fixtureProgram } from '../helpers/paths.js';
import { programHash, until } from '../helpers/node.js';
import { freePort, get, running, startCliNode, type CliNode } from './harness.js';

const HASH = programHash('sockets');
const PROGRAMS = [{ name: 'sockets', script: fixtureProgram('sockets.js') }];

/** `aleph-edge run` to its exit: code and stderr. */
function runToExit(configFile: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'run', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ALEPH_EDGE_LOG: 'info' } });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

async function programPid(node: CliNode): Promise<number> {
  const reply = await get(node, `/vm/${HASH}/`);
  assert.equal(reply.status, 200);
  return Number(reply.body.split(' ')[1]);
}

/** Everything a refused start must leave alone: file names, inodes and contents of the state directory. */
async function stateSnapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir, { recursive: true })).map(String).sort()) {
    if (name.startsWith('certs')) continue;
    const file = path.join(dir, name);
    const info = await stat(file);
    out.push(`${name} ino=${info.ino} ${info.isFile() ? await readFile(file, 'utf8') : info.isSocket() ? 'socket' : 'dir'}`);
  }
  return out;
}

describe('a second aleph-edge on the same state directory', () => {
  const dirs: string[] = [];
  const nodes: CliNode[] = [];
  after(async () => {
    for (const node of nodes) await node.stop();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('exits 1 naming the running node and touches nothing: its programs, socket and records stay', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-second-'));
    dirs.push(dir);
    const first = await startCliNode({ dir, workers: 2, programs: PROGRAMS });
    nodes.push(first);
    const pid = await programPid(first);
    const before = await stateSnapshot(dir);
    assert.ok(before.some((line) => line.startsWith('executions/')), before.join('\n'));

    const second = await runToExit(first.configFile);
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`another aleph-edge is running \\(pid ${first.child.pid}, status socket ${first.socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`));
    assert.doesNotMatch(second.stderr, /killed programs|EADDRINUSE/);

    assert.ok(running(pid), 'the first node\'s program was killed');
    assert.deepEqual(await stateSnapshot(dir), before);
    assert.equal(await programPid(first), pid, 'the first node serves from the same program');
    assert.equal(first.child.exitCode, null);
    process.stdout.write(`# second run: ${second.stderr.trim().split('\n').at(-1)}\n`);
  });

  it('takes over the lock of a SIGKILLed node, then reaps its orphans; a clean exit removes the lock', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-second-'));
    dirs.push(dir);
    const ports = { https: await freePort(), http: await freePort() };
    const first = await startCliNode({ dir, ports, workers: 1, programs: PROGRAMS });
    const orphan = await programPid(first);
    const lockFile = path.join(dir, 'aleph-edge.pid');
    assert.equal(JSON.parse(await readFile(lockFile, 'utf8')).pid, first.child.pid);
    const gone = new Promise((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGKILL');
    await gone;
    assert.ok(running(orphan), 'a SIGKILLed node leaves its program running');

    const next = await startCliNode({ dir, ports, workers: 1, programs: PROGRAMS });
    nodes.push(next);
    // The dead node's socket file is still there: wait for the new node's lock instead.
    await until(async () => JSON.parse(await readFile(lockFile, 'utf8')).pid === next.child.pid, 10_000, 'the new node to hold the lock');
    await until(() => get(next, '/').then(() => true, () => false), 10_000, 'the new node to listen');
    await until(() => !running(orphan), 5000, 'the orphan to be reaped');
    assert.notEqual(await programPid(next), orphan);
    assert.equal(await next.stop(), 0);
    assert.equal(existsSync(lockFile), false, 'the lock file outlived a clean exit');
  });
});
