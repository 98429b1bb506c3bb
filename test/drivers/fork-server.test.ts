// The process driver's fork server ([drivers.process] fork_server): local ASGI programs
// forked from a python3 that imported FastAPI once (real python3 and python3-fastapi,
// .ci/setup.d/asgi.sh). Each program is its own fork with its own code, environment
// and folder; the guest link accepts the forked program; stop and a killed client end
// the program; without a server the client starts the program itself.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GUEST_DIR, setLogLevel } from '../../src/common/index.js';
import { ProcessDriver, waitForHttp, type Instance } from '../../src/drivers/index.js';
import type { Program } from '../../src/programs/index.js';
import { httpGet, nextSlot, tempDir } from './helpers.js';
import { freePort } from '../helpers/ports.js';
import { alive, until } from '../helpers/node.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

const PYTHON = '/usr/bin/python3';
const APP = `import os, sys, urllib.request
from fastapi import FastAPI

app = FastAPI()
WHO = os.path.basename(os.getcwd())


@app.get("/")
def root():
    return {"who": WHO, "pid": os.getpid(), "ppid": os.getppid(), "greeting": os.environ.get("GREETING"),
            "cwd": os.getcwd(), "mains": sorted(m for m in sys.modules if m.startswith("main"))}


@app.get("/api")
def api():
    with urllib.request.urlopen(os.environ["ALEPH_API_HOST"] + "/hello", timeout=5) as reply:
        return {"api": reply.read().decode()}
`;

describe('process driver: fork server', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const driver = new ProcessDriver({ stopGraceMs: 5_000, python: PYTHON, forkServer: true });
  const running: Instance[] = [];
  let guestApi: http.Server;
  let guestSocket: string;

  /** A FastAPI app in a folder named `who` (the app says its folder's name). */
  async function program(who: string, env: Record<string, string> = {}): Promise<Program> {
    const appDir = join(dir.path, who);
    await mkdir(appDir, { recursive: true });
    await writeFile(join(appDir, 'main.py'), APP);
    return {
      hash: Buffer.from(who.padEnd(32, '-')).toString('hex').slice(0, 64), name: who, memoryMib: 64, vcpus: 1, healthPath: '', requestTimeoutMs: 0,
      launch: { kind: 'process', command: [], cwd: appDir, env, asgi: { app: 'main:app', appDir, guestDir: GUEST_DIR } },
    };
  }

  async function started(p: Program, slot: Parameters<ProcessDriver['start']>[1] = nextSlot()) {
    const instance = await driver.start(p, slot);
    running.push(instance);
    await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 60_000 });
    const reply = await httpGet(instance.endpoint, '/');
    assert.equal(reply.status, 200);
    return { instance, body: JSON.parse(reply.body) as { who: string; pid: number; ppid: number; greeting: string | null; cwd: string; mains: string[] } };
  }

  before(async () => {
    dir = await tempDir();
    guestSocket = join(dir.path, 'guest.sock');
    guestApi = http.createServer((_req, res) => res.end('hello from the guest API'));
    await new Promise<void>((resolve) => guestApi.listen(guestSocket, resolve));
  });

  after(async () => {
    await Promise.all(running.map((i) => i.stop()));
    guestApi.close();
    await dir.remove();
  });

  it('forks each program from the pre-imported server, with its own code, environment and folder', async () => {
    const a = await started(await program('alpha', { GREETING: 'hi alpha' }));
    const b = await started(await program('beta', { GREETING: 'hi beta' }));
    assert.equal(a.body.who, 'alpha');
    assert.equal(b.body.who, 'beta', 'beta imported its own main.py, not alpha\'s');
    assert.deepEqual(b.body.mains, ['main'], 'nothing of alpha\'s modules in beta');
    assert.equal(a.body.greeting, 'hi alpha');
    assert.equal(b.body.greeting, 'hi beta');
    assert.equal(b.body.cwd, join(dir.path, 'beta'));
    // Forked by the server: neither the process the node started nor its child.
    assert.notEqual(a.body.pid, a.instance.pid);
    assert.notEqual(a.body.ppid, a.instance.pid);
    assert.equal(a.body.ppid, b.body.ppid, 'both children of the one fork server');
  });

  it('lets the forked program reach its own guest API (the link checks the program\'s process tree)', async () => {
    const p = await program('gamma');
    const { instance } = await started(p, { ...nextSlot(), guestApi: { socket: guestSocket } });
    const reply = await httpGet(instance.endpoint, '/api');
    assert.equal(reply.status, 200);
    assert.deepEqual(JSON.parse(reply.body), { api: 'hello from the guest API' });
  });

  it('ends the program on stop, and when the process the node watches is killed', async () => {
    const stopped = await started(await program('delta'));
    await stopped.instance.stop();
    assert.equal((await stopped.instance.exited).requested, true);
    await until(() => !alive(stopped.body.pid), 10_000, 'the forked program gone after stop');

    const killed = await started(await program('epsilon'));
    process.kill(killed.instance.pid!, 'SIGKILL');
    assert.equal((await killed.instance.exited).requested, false);
    await until(() => !alive(killed.body.pid), 10_000, 'the forked program gone with its client');
  });

  it('starts the program itself when no fork server answers', async () => {
    const p = await program('zeta');
    const port = await freePort();
    const client = spawn(PYTHON, ['-I', '-S', join(GUEST_DIR, 'forkserver', 'client.py'), join(dir.path, 'no-such.sock'),
      '--app', 'main:app', '--app-dir', join(dir.path, 'zeta'), '--host', '127.0.0.1', '--port', String(port)], {
      cwd: (p.launch as { cwd: string }).cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PYTHONPATH: GUEST_DIR }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    client.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      await waitForHttp({ kind: 'tcp', host: '127.0.0.1', port }, { path: '/', deadline: Date.now() + 60_000 });
      const body = JSON.parse((await httpGet({ kind: 'tcp', host: '127.0.0.1', port }, '/')).body) as { who: string; pid: number };
      assert.equal(body.who, 'zeta');
      assert.equal(body.pid, client.pid, 'the client became the program (exec)');
      assert.match(stderr, /no fork server, starting the program directly/);
    } finally {
      client.kill('SIGKILL');
    }
  });
});
