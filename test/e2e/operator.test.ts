// Operator habits against a real `aleph-edge run` process: a second Ctrl-C during a
// drain stops at once (the open stream cut, its access-log line written, the
// program stopped), and `aleph-edge stop` takes the short hash `vms` prints.
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { CLI, example } from '../helpers/paths.js';
import { alive, programHash, toml, until } from '../helpers/node.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);


interface RunningNode {
  child: ChildProcess;
  socket: string;
  httpsPort: number;
  ca: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function startNode(drainTimeout: string, workers = 1): Promise<RunningNode> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-operator-'));
  dirs.push(dir);
  const httpsPort = await freePort();
  const httpPort = await freePort();
  const socket = path.join(dir, 'status.sock');
  const text = toml({ workers, programs: [{ name: 'echo', script: example('echo') }] }, dir)
    .replace('127.0.0.1:8443', `127.0.0.1:${httpsPort}`)
    .replace('127.0.0.1:8080', `127.0.0.1:${httpPort}`)
    .replace('drain_timeout = "5s"', `drain_timeout = "${drainTimeout}"`);
  await writeFile(path.join(dir, 'aleph-edge.toml'), text);
  const child = spawn(process.execPath, [CLI, 'run', '--config', path.join(dir, 'aleph-edge.toml')], {
    env: { ...process.env, ALEPH_EDGE_LOG: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await until(() => existsSync(socket) || child.exitCode !== null, 15_000, 'the status socket');
  assert.equal(child.exitCode, null, err);
  const ca = await readFile(path.join(dir, 'certs/internal/ca.crt'), 'utf8');
  return { child, socket, httpsPort, ca, stderr: () => err, exited };
}

const cli = async (...args: string[]) => run(process.execPath, [CLI, ...args]).then((r) => r.stdout);

describe('operator habits', () => {
  const echo = programHash('echo');

  for (const workers of [1, 2]) it(`a second SIGINT during a drain stops at once: the stream is cut and logged, the program stopped (workers = ${workers})`, async () => {
    // drain_timeout 60 s: without the second signal the node would wait that long for the stream.
    const node = await startNode('60s', workers);
    try {
      let streamed = '';
      let streamClosed = false;
      const firstChunk = new Promise<void>((resolve, reject) => {
        https.get({
          host: '127.0.0.1', port: node.httpsPort, servername: 'edge.test', ca: node.ca, agent: false,
          path: `/vm/${echo}/stream?chunks=100000&interval=200`, headers: { host: 'edge.test' },
        }, (res) => {
          res.setEncoding('utf8');
          res.on('data', (c: string) => { streamed += c; resolve(); });
          res.on('close', () => (streamClosed = true));
          res.on('error', () => undefined);
        }).on('error', reject);
      });
      await firstChunk;
      const vms = JSON.parse(await cli('vms', '--socket', node.socket, '--json')) as Array<{ pid: number }>;
      assert.equal(vms.length, 1);
      node.child.kill('SIGINT');
      await until(() => /draining/.test(node.stderr()), 5_000, 'the drain to start');
      // The first Ctrl-C drains: the stream keeps flowing, the node waits for it.
      const before = streamed.length;
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal(node.child.exitCode, null, 'still draining');
      assert.ok(streamed.length > before, 'the stream still flows during the drain');
      assert.equal(streamClosed, false);

      node.child.kill('SIGINT');
      const code = await Promise.race([node.exited, new Promise<'still running'>((r) => setTimeout(() => r('still running'), 15_000))]);
      assert.equal(code, 0, node.stderr());
      await until(() => streamClosed, 2_000, 'the stream to be cut');
      for (const vm of vms) assert.equal(alive(vm.pid), false, `program pid ${vm.pid} still alive`);
      assert.match(node.stderr(), /stopping now/);
      // The cut stream has its access-log line, marked as cut.
      const line = node.stderr().split('\n').find((l) => l.includes(`GET edge.test/vm/${echo}/stream`));
      assert.ok(line, `no access-log line for the stream in:\n${node.stderr()}`);
      assert.match(line, /status=200/);
      assert.match(line, /cut=true/);
    } finally {
      if (node.child.exitCode === null) node.child.kill('SIGKILL');
    }
  });

  it('`aleph-edge stop` takes the short hash `vms` prints', async () => {
    const node = await startNode('5s');
    try {
      await new Promise<void>((resolve, reject) => {
        https.get({
          host: '127.0.0.1', port: node.httpsPort, servername: 'edge.test', ca: node.ca, agent: false,
          path: `/vm/${echo}/x`, headers: { host: 'edge.test' },
        }, (res) => { res.resume(); res.on('end', resolve); }).on('error', reject);
      });
      const table = await cli('vms', '--socket', node.socket);
      const short = new RegExp(`${echo.slice(0, 6)}[0-9a-f]*…?`).exec(table)?.[0];
      assert.ok(short && short.length < 64, `a short hash in:\n${table}`);
      assert.equal((await cli('stop', short, '--socket', node.socket)).trim(), `stopped ${echo}`);
      await until(async () => JSON.parse(await cli('vms', '--socket', node.socket, '--json')).length === 0, 5_000, 'the program to stop');
      await assert.rejects(cli('stop', short, '--socket', node.socket), (e: { code: number; stderr: string }) => {
        assert.equal(e.code, 1);
        assert.match(e.stderr, /no running program has a hash starting with/);
        return true;
      });
    } finally {
      node.child.kill('SIGTERM');
      await node.exited;
    }
  });

  it('a SIGTERM while the node is still starting is not lost: it drains once up and exits 0', async () => {
    // The config is a FIFO: the node blocks reading it, so the signal lands while it starts.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-operator-'));
    dirs.push(dir);
    const [httpsPort, httpPort] = [await freePort(), await freePort()];
    const text = toml({ programs: [{ name: 'echo', script: example('echo') }] }, dir)
      .replace('127.0.0.1:8443', `127.0.0.1:${httpsPort}`)
      .replace('127.0.0.1:8080', `127.0.0.1:${httpPort}`);
    const fifo = path.join(dir, 'aleph-edge.toml');
    await run('mkfifo', [fifo]);
    const child = spawn(process.execPath, [CLI, 'run', '--config', fifo], { env: { ...process.env, ALEPH_EDGE_LOG: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => (err += c));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      // The CLI has installed its handlers once one of its threads waits in the FIFO's open.
      const waitsOnFifo = () => readdirSync(`/proc/${child.pid}/task`).some((tid) => {
        try { return /fifo|wait_for_partner/.test(readFileSync(`/proc/${child.pid}/task/${tid}/wchan`, 'utf8')); } catch { return false; }
      });
      await until(() => waitsOnFifo(), 10_000, 'the node to open its config');
      child.kill('SIGTERM');
      await until(() => err.includes('shutting down once started'), 5_000, 'the signal to be noted');
      await writeFile(fifo, text);
      const code = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 20_000))]);
      assert.equal(code, 0, err);
      assert.match(err, /aleph-edge ready/);
      assert.match(err, /shutting down reason=SIGTERM/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
