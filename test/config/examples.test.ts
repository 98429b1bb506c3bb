import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkConfig, defaultSettings, loadConfig } from '../../src/config/index.js';

// Compiled to dist/test/config/, so the repository root is three levels up.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CONF = join(ROOT, 'conf');

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('conf/dev.toml', () => {
  it('loads without issues', async () => {
    assert.deepEqual(await checkConfig(join(CONF, 'dev.toml')), []);
  });

  it('runs the examples from conf/ with their documented hashes', async () => {
    const settings = await loadConfig(join(CONF, 'dev.toml'));
    assert.equal(settings.server.domain, 'localhost');
    assert.deepEqual(settings.server.httpsListen, [{ host: '127.0.0.1', port: 8443 }]);
    assert.deepEqual(settings.server.httpListen, [{ host: '127.0.0.1', port: 8080 }]);
    assert.equal(settings.tls.mode, 'internal');
    assert.equal(settings.tls.storage, join(ROOT, 'certs/dev'));
    assert.equal(settings.server.statusSocket, join(ROOT, 'run/aleph-edge.sock'));
    assert.equal(settings.orchestrator.driver, 'process');
    assert.equal(settings.orchestrator.idleTimeoutMs, 5 * 60_000);

    const programs = settings.programs.local.map((p) => [p.name, p.hash]);
    assert.deepEqual(programs, [
      ['counter', sha256('aleph-edge example counter')],
      ['echo', sha256('aleph-edge example echo')],
      ['sse', sha256('aleph-edge example sse')],
      ['asgi-counter', sha256('aleph-edge example asgi-counter')],
    ]);
    const [asgi] = settings.programs.local.filter((p) => p.asgi);
    assert.deepEqual(asgi?.asgi, { app: 'main:app', code: join(ROOT, 'examples/asgi-counter') });
    assert.ok(existsSync(join(ROOT, 'examples/asgi-counter/main.py')));
    for (const program of settings.programs.local.filter((p) => !p.asgi)) {
      assert.equal(program.cwd, CONF);
      assert.equal(program.command[0], 'node');
      const script = resolve(program.cwd, program.command[1]!);
      assert.ok(existsSync(script), `${program.name}: ${script} exists`);
    }
  });
});

describe('conf/aleph-edge.toml', () => {
  it('loads without issues', async () => {
    assert.deepEqual(await checkConfig(join(CONF, 'aleph-edge.toml')), []);
  });

  it('spells out the defaults: only domain and email differ from them', async () => {
    const settings = await loadConfig(join(CONF, 'aleph-edge.toml'));
    assert.equal(settings.server.domain, 'vm.example.org');
    assert.equal(settings.tls.email, 'ops@example.org');
    assert.deepEqual(
      { ...settings, file: '', server: { ...settings.server, domain: 'localhost' }, tls: { ...settings.tls, email: '' } },
      defaultSettings(CONF),
    );
  });
});
