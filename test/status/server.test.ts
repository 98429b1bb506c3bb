import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createNetServer } from 'node:net';
import { lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addLogSink, setLogLevel, type LogRecord } from '../../src/common/index.js';
import { startStatusServer, type StatusServer } from '../../src/status/index.js';
import { FakeProvider, HASH_A, HASH_B, rawRequest, withTempDir } from './helpers.js';

setLogLevel('silent');

const json = (text: string): unknown => JSON.parse(text);

describe('status server routes', () => {
  let dir: string;
  let server: StatusServer;
  const provider = new FakeProvider();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-status-'));
    server = await startStatusServer({ path: join(dir, 'status.sock'), provider });
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const sock = () => server.path;

  it('GET /status returns the snapshot as JSON', async () => {
    const reply = await rawRequest(sock(), 'GET', '/status');
    assert.equal(reply.status, 200);
    assert.match(String(reply.headers['content-type']), /^application\/json/);
    assert.deepEqual(json(reply.text), provider.snapshot());
  });

  it('GET /vms returns the executions', async () => {
    const reply = await rawRequest(sock(), 'GET', '/vms');
    assert.equal(reply.status, 200);
    assert.match(String(reply.headers['content-type']), /^application\/json/);
    assert.deepEqual(json(reply.text), provider.vmList);
  });

  it('GET /certs returns snake_case certificate records', async () => {
    const reply = await rawRequest(sock(), 'GET', '/certs');
    assert.equal(reply.status, 200);
    const [first] = json(reply.text) as Record<string, string>[];
    const cert = provider.certList[0]!;
    assert.deepEqual(first, {
      host: cert.host,
      source: cert.source,
      not_before: cert.notBefore,
      not_after: cert.notAfter,
      issuer: cert.issuer,
    });
  });

  it('GET /metrics returns Prometheus text', async () => {
    const reply = await rawRequest(sock(), 'GET', '/metrics');
    assert.equal(reply.status, 200);
    assert.match(String(reply.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(reply.text, /^aleph_edge_requests_total 1534$/m);
  });

  it('POST /vms/<hash>/stop normalizes the hash and reports it', async () => {
    provider.calls.length = 0;
    const reply = await rawRequest(sock(), 'POST', `/vms/${HASH_A.toUpperCase()}/stop`);
    assert.equal(reply.status, 200);
    assert.deepEqual(json(reply.text), { stopped: HASH_A });
    assert.deepEqual(provider.calls, [['stopVm', HASH_A]]);
  });

  it('POST /vms/<malformed>/stop is a 400 and never reaches the provider', async () => {
    provider.calls.length = 0;
    for (const bad of ['abc', HASH_A + '0', 'g'.repeat(64), '%zz', '']) {
      const reply = await rawRequest(sock(), 'POST', `/vms/${bad}/stop`);
      assert.equal(reply.status, 400, bad);
      assert.match((json(reply.text) as { error: string }).error, /malformed program hash/);
    }
    assert.deepEqual(provider.calls, []);
  });

  it('POST /vms/<not running>/stop is a 404', async () => {
    const unknown = 'f'.repeat(64);
    const reply = await rawRequest(sock(), 'POST', `/vms/${unknown}/stop`);
    assert.equal(reply.status, 404);
    assert.match((json(reply.text) as { error: string }).error, /no running execution/);
  });

  it('POST /reload is 200 when accepted and 422 with the errors when not', async () => {
    provider.reloadResult = { ok: true, errors: [] };
    let reply = await rawRequest(sock(), 'POST', '/reload');
    assert.equal(reply.status, 200);
    assert.deepEqual(json(reply.text), { ok: true, errors: [] });

    provider.reloadResult = { ok: false, errors: ['/etc/aleph-edge/config.toml:12:3: unknown key "listn"'] };
    reply = await rawRequest(sock(), 'POST', '/reload');
    assert.equal(reply.status, 422);
    assert.deepEqual(json(reply.text), provider.reloadResult);
    provider.reloadResult = { ok: true, errors: [] };
  });

  it('POST /drain is accepted (202) and starts draining', async () => {
    provider.calls.length = 0;
    const reply = await rawRequest(sock(), 'POST', '/drain');
    assert.equal(reply.status, 202);
    assert.deepEqual(provider.calls, [['drain']]);
  });

  it('a wrong method on a known path is a 405 with Allow', async () => {
    let reply = await rawRequest(sock(), 'POST', '/status');
    assert.equal(reply.status, 405);
    assert.equal(reply.headers.allow, 'GET');
    assert.ok((json(reply.text) as { error: string }).error);

    reply = await rawRequest(sock(), 'GET', `/vms/${HASH_A}/stop`);
    assert.equal(reply.status, 405);
    assert.equal(reply.headers.allow, 'POST');

    reply = await rawRequest(sock(), 'DELETE', '/vms');
    assert.equal(reply.status, 405);
  });

  it('an unknown path is a 404 with a JSON error', async () => {
    for (const path of ['/', '/nope', '/status/', '/vms/x', '/../etc/passwd']) {
      const reply = await rawRequest(sock(), 'GET', path);
      assert.equal(reply.status, 404, path);
      assert.match(String(reply.headers['content-type']), /^application\/json/);
      assert.equal(typeof (json(reply.text) as { error: unknown }).error, 'string');
    }
  });

  it('query strings are ignored for routing', async () => {
    const reply = await rawRequest(sock(), 'GET', '/vms?verbose=1');
    assert.equal(reply.status, 200);
  });

  it('refuses request bodies over 1 KiB', async () => {
    const reply = await rawRequest(sock(), 'POST', '/drain', 'x'.repeat(2048));
    assert.equal(reply.status, 413);
    const small = await rawRequest(sock(), 'POST', '/reload', '{}');
    assert.equal(small.status, 200);
  });

  it('a provider exception is a generic 500; the detail goes to the log only', async () => {
    const records: LogRecord[] = [];
    const remove = addLogSink((record) => records.push(record));
    const secret = new Error('disk /var/lib/aleph-edge/secret.key unreadable');
    provider.failWith = secret;
    try {
      for (const [method, path] of [['GET', '/status'], ['GET', '/vms'], ['POST', `/vms/${HASH_B}/stop`], ['POST', '/drain']] as const) {
        const reply = await rawRequest(sock(), method, path);
        assert.equal(reply.status, 500, path);
        assert.deepEqual(json(reply.text), { error: 'internal error' });
        assert.doesNotMatch(reply.text, /secret|\.key|at .*\.js/);
      }
    } finally {
      provider.failWith = undefined;
      remove();
    }
    assert.ok(records.some((r) => r.level === 'error' && String(r.fields.error).includes('secret.key')));
  });

  it('listens on the socket path, never on TCP', () => {
    const address = server.address();
    assert.equal(typeof address, 'string');
    assert.equal(address, server.path);
  });
});

describe('status socket file', () => {
  it('is created with mode 0660 by default, in a new 0750 parent directory', () =>
    withTempDir(async (dir) => {
      const path = join(dir, 'run', 'aleph-edge', 'status.sock');
      const server = await startStatusServer({ path, provider: new FakeProvider() });
      try {
        const stats = await lstat(path);
        assert.ok(stats.isSocket());
        assert.equal(stats.mode & 0o777, 0o660);
        assert.equal((await stat(join(dir, 'run', 'aleph-edge'))).mode & 0o777, 0o750);
      } finally {
        await server.close();
      }
    }));

  it('takes a custom mode regardless of the umask', () =>
    withTempDir(async (dir) => {
      const path = join(dir, 'status.sock');
      const previous = process.umask(0o077);
      let server: StatusServer;
      try {
        server = await startStatusServer({ path, mode: 0o666, provider: new FakeProvider() });
      } finally {
        process.umask(previous);
      }
      try {
        assert.equal((await lstat(path)).mode & 0o777, 0o666);
      } finally {
        await server.close();
      }
    }));

  it('close() removes the socket file and is idempotent', () =>
    withTempDir(async (dir) => {
      const path = join(dir, 'status.sock');
      const server = await startStatusServer({ path, provider: new FakeProvider() });
      await server.close();
      await server.close();
      await assert.rejects(lstat(path), { code: 'ENOENT' });
    }));

  it('replaces a stale socket file left by a crashed process', () =>
    withTempDir(async (dir) => {
      const path = join(dir, 'status.sock');
      await makeStaleSocket(dir, path);
      assert.ok((await lstat(path)).isSocket());
      const provider = new FakeProvider();
      const server = await startStatusServer({ path, provider });
      try {
        const reply = await rawRequest(path, 'GET', '/vms');
        assert.equal(reply.status, 200);
      } finally {
        await server.close();
      }
    }));

  it('does not steal the socket of a running server', () =>
    withTempDir(async (dir) => {
      const path = join(dir, 'status.sock');
      const first = await startStatusServer({ path, provider: new FakeProvider() });
      try {
        await assert.rejects(startStatusServer({ path, provider: new FakeProvider() }), {
          message: `another aleph-edge is already listening on ${path}`,
        });
        const reply = await rawRequest(path, 'GET', '/status');
        assert.equal(reply.status, 200);
      } finally {
        await first.close();
      }
    }));

  it('refuses a path that exists and is not a socket, leaving it intact', () =>
    withTempDir(async (dir) => {
      const path = join(dir, 'status.sock');
      await writeFile(path, 'precious data\n');
      await assert.rejects(startStatusServer({ path, provider: new FakeProvider() }), /not a socket/);
      assert.equal(await readFile(path, 'utf8'), 'precious data\n');

      const sub = join(dir, 'adir');
      await mkdir(sub);
      await assert.rejects(startStatusServer({ path: sub, provider: new FakeProvider() }), /not a socket/);
      assert.ok((await stat(sub)).isDirectory());
    }));

  it('refuses TCP-looking and relative paths without creating anything', () =>
    withTempDir(async (dir) => {
      const cwd = process.cwd();
      process.chdir(dir);
      try {
        for (const bad of ['127.0.0.1:9000', 'localhost:9000', ':9000', '9000', 'status.sock', './status.sock', '']) {
          await assert.rejects(startStatusServer({ path: bad, provider: new FakeProvider() }), /absolute unix socket path|non-empty/, bad);
        }
        await assert.rejects(
          startStatusServer({ path: 9000 as unknown as string, provider: new FakeProvider() }),
          /non-empty string/,
        );
        assert.deepEqual(await readdir(dir), []);
      } finally {
        process.chdir(cwd);
      }
    }));

  it('refuses a path too long for a unix socket, and a bad mode', () =>
    withTempDir(async (dir) => {
      await assert.rejects(startStatusServer({ path: join(dir, 'x'.repeat(120)), provider: new FakeProvider() }), /too long/);
      await assert.rejects(
        startStatusServer({ path: join(dir, 's.sock'), mode: 0o1777, provider: new FakeProvider() }),
        /invalid status socket mode/,
      );
    }));
});

/** Leaves a socket file nobody listens on: bind elsewhere, move it into place, close. */
async function makeStaleSocket(dir: string, path: string): Promise<void> {
  const temp = join(dir, 'tmp.sock');
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(temp, resolve));
  await rename(temp, path);
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
