// ASGI programs under the process driver: a [[programs.local]] entry with `asgi` and
// `code` becomes `<python> -m aleph_asgi ...` with guest/ on PYTHONPATH (real python3).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { GUEST_DIR, setLogLevel } from '../../src/common/index.js';
import { parseConfig } from '../../src/config/index.js';
import { ProcessDriver, waitForHttp, type Instance } from '../../src/drivers/index.js';
import { LocalProgramSource, type Program } from '../../src/programs/index.js';
import { httpGet, nextSlot, REPO_ROOT, tempDir } from './helpers.js';

setLogLevel('silent');

const PYTHON = '/usr/bin/python3';
const FIXTURES = join(REPO_ROOT, 'test/fixtures/asgi');
const HASH = 'c'.repeat(64);

async function asgiProgram(asgi: string, extra = ''): Promise<Program> {
  const settings = parseConfig(`[server]
domain = "localhost"
[tls]
mode = "internal"
[[programs.local]]
hash = "${HASH}"
asgi = "${asgi}"
code = "${FIXTURES}"
${extra}
`, join(REPO_ROOT, 'conf/test.toml'));
  return new LocalProgramSource(settings.programs.local).resolve(HASH);
}

describe('process driver: ASGI programs', () => {
  const driver = new ProcessDriver({ stopGraceMs: 15_000, python: PYTHON });
  const running: Instance[] = [];
  after(async () => {
    await Promise.all(running.map((i) => i.stop()));
  });

  it('serves module:app with our server on the port it was given, lifespan first, and stops cleanly', async () => {
    const dir = await tempDir();
    try {
      const marker = join(dir.path, 'shutdown');
      const program = await asgiProgram('probe:app', `env = { GREETING = "hi", PROBE_SHUTDOWN_MARKER = "${marker}" }`);
      assert.equal(program.launch.kind, 'process');
      const instance = await driver.start(program, nextSlot());
      running.push(instance);
      assert.equal(instance.endpoint.kind, 'tcp');
      const endpoint = instance.endpoint as { kind: 'tcp'; host: string; port: number };
      await waitForHttp(endpoint, { path: '', deadline: Date.now() + 15_000 });

      const reply = await httpGet(endpoint, '/some/path');
      assert.equal(reply.status, 200);
      const body = JSON.parse(reply.body) as Record<string, unknown>;
      assert.equal(body.path, '/some/path');
      assert.equal(body.cwd, FIXTURES);
      assert.equal(body.pythonpath, GUEST_DIR);
      assert.equal(body.greeting, 'hi');
      assert.equal(body.executable, PYTHON);
      assert.equal(body.lifespan, true);
      assert.deepEqual(body.server, ['127.0.0.1', endpoint.port]);

      const argv = readFileSync(`/proc/${instance.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      assert.deepEqual(argv, [PYTHON, '-m', 'aleph_asgi', '--app', 'probe:app', '--app-dir', FIXTURES, '--host', '127.0.0.1', '--port', String(endpoint.port)]);

      await instance.stop();
      assert.deepEqual(await instance.exited, { code: 0, signal: null, requested: true });
      assert.equal(await readFile(marker, 'utf8'), 'shutdown ran\n'); // lifespan shutdown on SIGTERM
    } finally {
      await dir.remove();
    }
  });

  it('a slow lifespan shutdown is not cut short by the default 5 s stop_grace (the grace covers the server\'s own 13 s)', async () => {
    const dir = await tempDir();
    const defaultGrace = new ProcessDriver({ stopGraceMs: 5_000, python: PYTHON });
    try {
      const marker = join(dir.path, 'shutdown');
      const program = await asgiProgram('probe:app', `env = { PROBE_SHUTDOWN_MARKER = "${marker}", PROBE_SHUTDOWN_SECONDS = "7" }`);
      const instance = await defaultGrace.start(program, nextSlot());
      running.push(instance);
      const endpoint = instance.endpoint as { kind: 'tcp'; host: string; port: number };
      await waitForHttp(endpoint, { path: '', deadline: Date.now() + 15_000 });
      await instance.stop();
      assert.deepEqual(await instance.exited, { code: 0, signal: null, requested: true });
      assert.equal(await readFile(marker, 'utf8'), 'shutdown ran\n');
    } finally {
      await dir.remove();
    }
  });

  it('an app that cannot be loaded exits with code 2 and never answers', async () => {
    const instance = await driver.start(await asgiProgram('probe:missing'), nextSlot());
    running.push(instance);
    const exit = await instance.exited;
    assert.equal(exit.code, 2);
    assert.equal(exit.requested, false);
  });

  it('GUEST_DIR is the package folder that holds the server', async () => {
    assert.equal(GUEST_DIR, join(REPO_ROOT, 'guest'));
    await readFile(join(GUEST_DIR, 'aleph_asgi/__main__.py'));
  });
});
