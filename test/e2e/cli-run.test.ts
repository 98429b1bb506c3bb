import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { CLI, example } from '../helpers/paths.js';
import { alive, programHash, toml, until } from '../helpers/node.js';
import { promtoolCheck } from '../helpers/promtool.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);


function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

describe('aleph-edge run, as an operator runs it', () => {
  let dir: string;
  let child: ChildProcess;
  let httpsPort: number;
  let socket: string;
  let ca: string;
  const echo = programHash('echo');
  const counter = programHash('counter');

  const cli = async (...args: string[]) => (await run(process.execPath, [CLI, ...args])).stdout;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-cli-'));
    httpsPort = await freePort();
    const httpPort = await freePort();
    socket = path.join(dir, 'status.sock');
    const text = toml({
      programs: [{ name: 'echo', script: example('echo') }, { name: 'counter', script: example('counter') }],
      // Long enough for two CLI runs on a loaded machine between the request and the listing.
      orchestrator: ['idle_timeout = "20s"'],
    }, dir)
      .replace('127.0.0.1:8443', `127.0.0.1:${httpsPort}`)
      .replace('127.0.0.1:8080', `127.0.0.1:${httpPort}`);
    await writeFile(path.join(dir, 'aleph-edge.toml'), text);
    child = spawn(process.execPath, [CLI, 'run', '--config', path.join(dir, 'aleph-edge.toml')], {
      env: { ...process.env, ALEPH_EDGE_LOG: 'warn' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    await until(() => existsSync(socket), 120_000, 'the status socket'); // a ceiling for a failing start, not a timing claim
    ca = await readFile(path.join(dir, 'certs/internal/ca.crt'), 'utf8');
  });

  after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('check-config accepts the file and rejects a broken one with file:line', async () => {
    assert.match(await cli('check-config', path.join(dir, 'aleph-edge.toml')), /ok/);
    const bad = path.join(dir, 'bad.toml');
    await writeFile(bad, '[server]\ndomain = "x.test"\nbogus = 1\n');
    await assert.rejects(cli('check-config', bad), (e: { code: number; stderr: string }) => {
      assert.equal(e.code, 1);
      assert.match(e.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:\\d+: .*bogus`));
      return true;
    });
  });

  // The claim is that proxy memory does not grow with the body. It is measured on a
  // second, larger upload: the first one takes the process to its steady state,
  // which includes the garbage V8 lets pile up before it collects. Node 24's V8
  // (13.6) answers external memory pressure with an incremental mark-compact,
  // where Node 20's (11.3) ran a scavenge at once, so up to ~64 MB of dead socket
  // buffers (its external-memory soft limit) are awaiting collection at any time,
  // whatever the body size: measured fresh, 10/25/50/100/200/400 MB bodies grew RSS
  // by 11/26/31/62/59/76 MB, and a second upload of 200 or 400 MB by 0-15 MB.
  // The second upload goes to a program that reads at 40 MiB/s, slower than the
  // client sends: a proxy that buffers instead of applying backpressure grows by
  // the difference (a PassThrough of unbounded highWaterMark in the forwarder grew it by 219 MB;
  // the old single fast upload did not notice that defect at all).
  const upload = async (mb: number, readMibPerS = 0): Promise<number> => {
    const chunk = Buffer.alloc(1 << 20, 7);
    const expected = createHash('sha256');
    for (let i = 0; i < mb; i++) expected.update(chunk);
    const baseline = rssBytes(child.pid!);
    let peak = baseline;
    const sampler = setInterval(() => { peak = Math.max(peak, rssBytes(child.pid!)); }, 20);
    const reply = await new Promise<string>((resolve, reject) => {
      const req = https.request({
        host: '127.0.0.1', port: httpsPort, servername: 'edge.test', ca, method: 'POST',
        path: `/vm/${echo}/upload?read_mib_s=${readMibPerS}`, headers: { host: 'edge.test', 'content-length': String(mb * chunk.length) }, agent: false,
      }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      let sent = 0;
      const pump = () => {
        while (sent < mb) {
          sent++;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    }).finally(() => clearInterval(sampler));
    const body = JSON.parse(reply) as { body_bytes: number; body_sha256: string };
    assert.equal(body.body_bytes, mb * chunk.length);
    assert.equal(body.body_sha256, expected.digest('hex'));
    const growthMb = (peak - baseline) / (1 << 20);
    process.stdout.write(`# ${mb} MB upload: proxy RSS baseline ${(baseline / (1 << 20)).toFixed(1)} MB, peak growth ${growthMb.toFixed(1)} MB\n`);
    return growthMb;
  };

  it('streams request bodies of 100 then 300 MB to the program; the second, to a slow reader, does not grow proxy memory', async () => {
    await upload(100);
    const growthMb = await upload(300, 40);
    assert.ok(growthMb < 50, `RSS grew by ${growthMb.toFixed(1)} MB during a 300 MB upload`);
  });

  it('lists the running program through the status socket, then stops it when idle', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: httpsPort, servername: 'edge.test', ca, path: `/vm/${counter}/state/increment`, headers: { host: 'edge.test' }, agent: false },
        (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => resolve(b)); }).on('error', reject);
    });
    assert.equal(reply.trim(), '1');
    const vms = JSON.parse(await cli('vms', '--socket', socket, '--json')) as Array<{ hash: string; state: string; pid: number }>;
    const entry = vms.find((v) => v.hash === counter);
    assert.ok(entry, 'counter listed');
    assert.equal(entry.state, 'ready');
    const table = await cli('vms', '--socket', socket);
    assert.match(table, new RegExp(counter.slice(0, 12)));
    await until(async () => {
      const list = JSON.parse(await cli('vms', '--socket', socket, '--json')) as Array<{ hash: string }>;
      return !list.some((v) => v.hash === counter);
    }, 120_000, 'idle stop');
    assert.equal(alive(entry.pid), false);
  });

  it('`aleph-edge metrics` prints an exposition that Prometheus\'s own parser accepts', async () => {
    const text = await cli('metrics', '--socket', socket);
    assert.match(text, /^aleph_edge_requests_total/m);
    const check = await promtoolCheck(text);
    assert.equal(check.code, 0, `promtool check metrics: ${check.output}`);
    assert.equal(check.output.trim(), '', 'no lint findings');
  });

  it('drains on SIGTERM: exits 0, removes the socket, leaves no program running', async () => {
    const vms = JSON.parse(await cli('vms', '--socket', socket, '--json')) as Array<{ pid: number }>;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.equal(existsSync(socket), false);
    for (const vm of vms) assert.equal(alive(vm.pid), false);
  });
});
