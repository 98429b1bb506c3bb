// The process driver's execution records: what a node restarted after SIGKILL kills,
// and what it must leave alone (recycled pids, other boots).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger, setLogLevel } from '../../src/common/index.js';
import { ExecutionRecords } from '../../src/drivers/process/records.js';
import { fixtureProgram } from '../helpers/paths.js';
import { until } from '../helpers/node.js';
import { running } from './harness.js';

/** A detached process (own group) that forks one child into its group; resolves [leader, child]. */
async function group(): Promise<[number, number]> {
  const marker = fixtureProgram('chaos-bad.js') + ':records-test';
  const script = `const c = require('child_process').spawn(process.execPath, ['-e', 'setInterval(()=>{},1000)', ${JSON.stringify(marker)}], { stdio: 'ignore' }); console.log(c.pid); setInterval(() => {}, 1000);`;
  const leader = spawn(process.execPath, ['-e', script, marker], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  leader.unref();
  const childPid = await new Promise<number>((resolve) => leader.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  leader.stdout!.destroy();
  return [leader.pid!, childPid];
}

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

describe('process driver execution records', () => {
  let dir: string;
  const started: number[] = [];
  const log = createLogger('test');

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-'));
  });
  after(async () => {
    for (const pid of started) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    await rm(dir, { recursive: true, force: true });
  });

  it('kills a recorded group that is still running, leader and child', async () => {
    const records = new ExecutionRecords(path.join(dir, 'a'), log);
    const [leader, child] = await group();
    started.push(leader, child);
    records.add(leader, 'h'.repeat(64));
    assert.deepEqual(await readdir(path.join(dir, 'a')), [`${leader}.json`]);
    assert.ok(new ExecutionRecords(path.join(dir, 'a'), log).reap() >= 1);
    await until(() => !running(leader) && !running(child), 3000, 'the group to die');
    assert.deepEqual(await readdir(path.join(dir, 'a')), []);
  });

  it('kills the leftover children of a group whose leader already exited', async () => {
    const records = new ExecutionRecords(path.join(dir, 'b'), log);
    const [leader, child] = await group();
    started.push(leader, child);
    records.add(leader, 'h'.repeat(64));
    process.kill(leader, 'SIGKILL');
    await until(() => !running(leader), 3000, 'the leader to die');
    assert.ok(running(child));
    assert.equal(new ExecutionRecords(path.join(dir, 'b'), log).reap(), 1);
    await until(() => !running(child), 3000, 'the child to die');
  });

  it('leaves alone a process whose pid matches but whose start time or boot differs', async () => {
    const sub = path.join(dir, 'c');
    const records = new ExecutionRecords(sub, log);
    const [leader, child] = await group();
    started.push(leader, child);
    records.add(leader, 'h'.repeat(64));
    const file = path.join(sub, `${leader}.json`);
    const record = JSON.parse(await readFile(file, 'utf8')) as { start_time: string; boot_id: string };
    await writeFile(file, JSON.stringify({ ...record, start_time: String(Number(record.start_time) - 1) }));
    assert.equal(new ExecutionRecords(sub, log).reap(), 0);
    records.add(leader, 'h'.repeat(64));
    await writeFile(file, JSON.stringify({ ...record, boot_id: 'another-boot' }));
    assert.equal(new ExecutionRecords(sub, log).reap(), 0);
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(running(leader) && running(child));
    await writeFile(path.join(sub, 'garbage.json'), 'not json'); // ignored: not a <pid>.json name
    await writeFile(path.join(sub, '123.json'), 'not json'); // unreadable: removed
    assert.equal(new ExecutionRecords(sub, log).reap(), 0);
    assert.deepEqual(await readdir(sub), ['garbage.json']);
  });
});
