// The README's two commands as a newcomer runs them: in a clean copy of the checkout,
// with the SYSTEM Node (Debian 12: 18 or 20) first on PATH, `npm install` then
// `npm start` until the node answers on its port, and the test command's runtime.
// npm scripts must run the Node 24 that the devDependency `node` puts in
// node_modules/.bin; started directly on the old Node, the CLI says so in one line.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { nodeTooOld } from '../../src/runtime.js';
import { ROOT } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);
const SYSTEM_NODE = '/usr/bin/node';

describe('the README commands', () => {
  it('the version check: one line naming the minimum and the way out, for Node 18 and 20 only', () => {
    for (const old of ['v18.19.0', 'v20.20.2', 'v22.11.9']) {
      const message = nodeTooOld(old);
      assert.match(message ?? '', /^aleph-edge needs Node\.js >= 22\.12\.0 .*this is v\d+\.\d+\.\d+\. In a checkout, `npm install` brings Node 24/, old);
      assert.ok(!message!.includes('\n'), 'one line');
    }
    for (const recent of ['v22.12.0', 'v23.0.0', 'v24.21.0', 'v30.1.2']) assert.equal(nodeTooOld(recent), undefined, recent);
  });

  let dir: string | undefined;
  let child: ReturnType<typeof spawn> | undefined;
  after(async () => {
    if (child?.pid && child.exitCode === null && child.signalCode === null) process.kill(-child.pid, 'SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const systemNode = existsSync(SYSTEM_NODE);
  it('npm install && npm start in a clean copy, with the system Node first on PATH', { skip: !systemNode && `no ${SYSTEM_NODE}`, timeout: 1_800_000 }, async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-readme-'));
    // What a clone would hold: tracked files and new ones not ignored, as they are now.
    const { stdout: listed } = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
    for (const file of listed.split('\0').filter(Boolean)) {
      const from = path.join(ROOT, file);
      if (!existsSync(from)) continue; // deleted in the work tree, not yet committed
      await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
      await cp(from, path.join(dir, file), { dereference: false });
    }
    // The embedded config, on ports of this test's own.
    const [httpsPort, httpPort] = [await freePort(), await freePort()];
    const conf = path.join(dir, 'conf/dev.toml');
    const text = await readFile(conf, 'utf8');
    const moved = text.replace('"127.0.0.1:8443"', `"127.0.0.1:${httpsPort}"`).replace('"127.0.0.1:8080"', `"127.0.0.1:${httpPort}"`);
    assert.notEqual(moved, text, 'conf/dev.toml listens where the README says');
    await writeFile(conf, moved);

    // The system Node first; nothing of this test's own runtime on PATH.
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' };
    for (const key of Object.keys(env)) if (key.startsWith('npm_') || key === 'NODE_OPTIONS') delete env[key];
    const { stdout: systemVersion } = await run('node', ['--version'], { env });
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd: dir, env, timeout: 1_200_000 });

    child = spawn('npm', ['start'], { cwd: dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    let server: string | undefined;
    while (server === undefined) {
      const answer = await new Promise<string | undefined>((resolve) => {
        https.get({ host: '127.0.0.1', port: httpsPort, path: '/', rejectUnauthorized: false, servername: 'localhost', agent: false }, (res) => {
          res.resume();
          resolve(String(res.headers['x-aleph-edge-version'] ?? ''));
        }).on('error', () => resolve(undefined));
      });
      if (answer !== undefined) server = answer;
      else if (child.exitCode !== null) assert.fail(`npm start exited with ${child.exitCode} before answering:\n${output.slice(-3000)}`);
      else await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.match(server, /^\d+\.\d+\.\d+/, 'the node answered (its own version in X-Aleph-Edge-Version)');
    process.kill(-child.pid!, 'SIGTERM');
    await exited;
    assert.doesNotMatch(output, /TypeError|at .*\(.*\.js:\d+:\d+\)/, 'no stack on the way');

    // The test command's runtime: npm scripts run Node 24 from node_modules/.bin.
    const { stdout: scriptNode } = await run('npm', ['exec', '--no', '--', 'node', '--version'], { cwd: dir, env });
    assert.match(scriptNode.trim(), /^v24\./);
    const { stdout: repeated } = await run('npm', ['run', '-s', 'test:repeat', '--', 'test/architecture.test.ts', '1'], { cwd: dir, env, timeout: 300_000 });
    assert.match(repeated, /passed 1 runs in a row/);

    // Started directly on an old system Node, the CLI refuses in one line.
    if (nodeTooOld(systemVersion.trim())) {
      const refused = await run('node', ['dist/src/cli.js', 'version'], { cwd: dir, env }).then(() => undefined, (error: { code: number; stderr: string }) => error);
      assert.ok(refused, 'the CLI ran on an old Node');
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /^aleph-edge needs Node\.js >= 22\.12\.0 [^\n]*\n$/);
    }
  });
});
