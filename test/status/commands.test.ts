import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setLogLevel } from '../../src/common/index.js';
import {
  runStatusCommand,
  startStatusServer,
  StatusClient,
  StatusClientError,
  STATUS_USAGE,
  type StatusServer,
} from '../../src/status/index.js';
import { captureIO, FakeProvider, HASH_A, HASH_B } from './helpers.js';

setLogLevel('silent');

describe('status CLI commands', () => {
  let dir: string;
  let server: StatusServer;
  const provider = new FakeProvider();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-status-cli-'));
    server = await startStatusServer({ path: join(dir, 'status.sock'), provider });
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const run = async (...argv: string[]) => {
    const capture = captureIO();
    const code = await runStatusCommand([...argv, '--socket', server.path], capture.io);
    return { code, stdout: capture.stdout(), stderr: capture.stderr() };
  };

  it('vms --json prints the provider data as pretty, newline-terminated JSON', async () => {
    const { code, stdout, stderr } = await run('vms', '--json');
    assert.equal(code, 0, stderr);
    assert.ok(stdout.endsWith('}\n]\n'));
    assert.match(stdout, /\n  \{/); // pretty-printed
    assert.deepEqual(JSON.parse(stdout), provider.vmList);
  });

  it('vms prints a table with short hashes and states', async () => {
    const { code, stdout } = await run('vms');
    assert.equal(code, 0);
    const [header, ...rows] = stdout.trimEnd().split('\n');
    assert.match(header!, /^HASH\s+NAME\s+STATE\s+DRIVER\s+ENDPOINT\s+UPTIME\s+REQUESTS\s+IN-FLIGHT\s+MEM$/);
    assert.equal(rows.length, 2);
    assert.ok(rows[0]!.startsWith(`${HASH_A.slice(0, 12)}…  hello-api`));
    assert.match(rows[0]!, /\bready\b/);
    assert.match(rows[0]!, /\b1h02m\b/);
    assert.match(rows[0]!, /256 MiB$/);
    assert.ok(rows[1]!.startsWith(`${HASH_B.slice(0, 12)}…`));
    assert.match(rows[1]!, /\bstarting\b/);
    assert.ok(!stdout.includes(HASH_A), 'full hash is not shown');
  });

  it('vms with nothing running says so', async () => {
    const saved = provider.vmList;
    provider.vmList = [];
    try {
      const { code, stdout } = await run('vms');
      assert.equal(code, 0);
      assert.equal(stdout, 'no programs running\n');
    } finally {
      provider.vmList = saved;
    }
  });

  it('certs prints a table; --json prints the wire records', async () => {
    const { code, stdout } = await run('certs');
    assert.equal(code, 0);
    const [header, acme, internal] = stdout.trimEnd().split('\n');
    assert.match(header!, /^HOST\s+SOURCE\s+NOT AFTER\s+DAYS LEFT\s+ISSUER$/);
    assert.match(acme!, /^api\.example\.org\s+acme\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC\s+80\s+\(STAGING\) Let's Encrypt R11$/);
    assert.match(internal!, /^localhost\s+internal\s+.*\bexpired\b/);

    const asJson = await run('certs', '--json');
    assert.equal(asJson.code, 0);
    const records = JSON.parse(asJson.stdout) as Array<Record<string, string>>;
    assert.equal(records[0]!.not_after, provider.certList[0]!.notAfter);
  });

  it('status prints a summary; --json the snapshot', async () => {
    const { code, stdout } = await run('status');
    assert.equal(code, 0);
    assert.match(stdout, /^version\s+0\.1\.0$/m);
    assert.match(stdout, /^uptime\s+1d02h$/m);
    assert.match(stdout, /^state\s+serving$/m);
    assert.match(stdout, /^listeners\s+https 127\.0\.0\.1:8443$/m);
    assert.match(stdout, /^\s+http \[::\]:80$/m);
    assert.match(stdout, /^programs\s+2 \(1 ready, 1 starting\)$/m);
    assert.match(stdout, /^certs\s+2 \(acme 1, internal 1\)$/m);
    assert.match(stdout, /^counters\s+boots\s+4$/m);

    const asJson = await run('status', '--json');
    assert.deepEqual(JSON.parse(asJson.stdout), provider.snapshot());
  });

  it('metrics prints the Prometheus text', async () => {
    const { code, stdout } = await run('metrics');
    assert.equal(code, 0);
    assert.match(stdout, /^aleph_edge_requests_total 1534\n$/m);
  });

  it('stop <hash> stops a running program', async () => {
    provider.calls.length = 0;
    const { code, stdout } = await run('stop', HASH_A.toUpperCase());
    assert.equal(code, 0);
    assert.equal(stdout, `stopped ${HASH_A}\n`);
    assert.deepEqual(provider.calls, [['stopVm', HASH_A]]);
  });

  it('stop takes the short hash vms prints (ellipsis pasted along) when one running program has it', async () => {
    provider.calls.length = 0;
    const table = (await run('vms')).stdout;
    const short = new RegExp(`${HASH_A.slice(0, 12)}…`).exec(table)?.[0];
    assert.ok(short, table);
    const { code, stdout } = await run('stop', short);
    assert.equal(code, 0);
    assert.equal(stdout, `stopped ${HASH_A}\n`);
    assert.deepEqual(provider.calls, [['vms'], ['vms'], ['stopVm', HASH_A]]);
    assert.equal((await run('stop', HASH_A.slice(0, 4).toUpperCase())).code, 0);
  });

  it('stop with an ambiguous or unknown prefix fails clearly and stops nothing', async () => {
    const twin = { ...provider.vmList[0]!, hash: `${HASH_A.slice(0, 8)}${'f'.repeat(56)}` };
    provider.vmList.push(twin);
    try {
      provider.calls.length = 0;
      const ambiguous = await run('stop', HASH_A.slice(0, 6));
      assert.equal(ambiguous.code, 1);
      assert.match(ambiguous.stderr, new RegExp(`^aleph-edge: ${HASH_A.slice(0, 6)} is ambiguous: 2 running programs start with it \\(${HASH_A.slice(0, 16)}, ${twin.hash.slice(0, 16)}\\); give more characters\n$`));
      const unknown = await run('stop', 'dead');
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /no running program has a hash starting with dead/);
      assert.equal((await run('stop', 'a3f')).code, 2, 'fewer than 4 characters: usage error');
      assert.deepEqual(provider.calls.filter((c) => c[0] === 'stopVm'), []);
      // More characters than the twin shares: unique again.
      assert.equal((await run('stop', HASH_A.slice(0, 9))).code, 0);
    } finally {
      provider.vmList.pop();
    }
  });

  it('stop of a program that is not running fails with the server message', async () => {
    const { code, stderr } = await run('stop', 'e'.repeat(64));
    assert.equal(code, 1);
    assert.equal(stderr, `aleph-edge: no running execution for ${'e'.repeat(64)}\n`);
  });

  it('stop with a malformed hash is a usage error', async () => {
    provider.calls.length = 0;
    const { code, stderr } = await run('stop', 'not-a-hash');
    assert.equal(code, 2);
    assert.match(stderr, /malformed program hash/);
    assert.deepEqual(provider.calls, []);
  });

  it('reload reports success, and failure with the errors and exit 1', async () => {
    let result = await run('reload');
    assert.equal(result.code, 0);
    assert.equal(result.stdout, 'configuration reloaded\n');

    provider.reloadResult = { ok: false, errors: ['config.toml:3:1: unknown key "x"'] };
    try {
      result = await run('reload');
      assert.equal(result.code, 1);
      assert.match(result.stderr, /reload rejected:\n {2}config\.toml:3:1: unknown key "x"\n$/);
      result = await run('reload', '--json');
      assert.equal(result.code, 1);
      assert.deepEqual(JSON.parse(result.stdout), provider.reloadResult);
    } finally {
      provider.reloadResult = { ok: true, errors: [] };
    }
  });

  it('drain starts draining', async () => {
    provider.calls.length = 0;
    const { code, stdout } = await run('drain');
    assert.equal(code, 0);
    assert.match(stdout, /draining/);
    assert.deepEqual(provider.calls, [['drain']]);
  });

  it('takes the socket from ALEPH_EDGE_SOCKET, and --socket=PATH', async () => {
    const viaEnv = captureIO({ ALEPH_EDGE_SOCKET: server.path });
    assert.equal(await runStatusCommand(['vms', '--json'], viaEnv.io), 0);
    assert.deepEqual(JSON.parse(viaEnv.stdout()), provider.vmList);

    const viaFlag = captureIO({ ALEPH_EDGE_SOCKET: '/nonexistent/env.sock' });
    assert.equal(await runStatusCommand([`--socket=${server.path}`, 'certs'], viaFlag.io), 0);
  });

  it('a missing socket is exit 1 with a clear message', async () => {
    const missing = join(dir, 'nope.sock');
    const capture = captureIO();
    const code = await runStatusCommand(['status', '--socket', missing], capture.io);
    assert.equal(code, 1);
    assert.equal(capture.stderr(), `aleph-edge: no aleph-edge status socket at ${missing} (is it running?)\n`);
    assert.equal(capture.stdout(), '');
  });

  it('bad usage is exit 2 with a one-line usage', async () => {
    for (const argv of [[], ['bogus'], ['vms', '--frobnicate'], ['vms', 'extra'], ['stop'], ['stop', HASH_A, HASH_B], ['vms', '--socket']]) {
      const capture = captureIO({ ALEPH_EDGE_SOCKET: server.path });
      const code = await runStatusCommand(argv, capture.io);
      assert.equal(code, 2, argv.join(' '));
      const lines = capture.stderr().trimEnd().split('\n');
      assert.equal(lines.at(-1), STATUS_USAGE);
      assert.equal(lines.length, 2);
    }
    const help = captureIO();
    assert.equal(await runStatusCommand(['--help'], help.io), 0);
    assert.equal(help.stdout(), STATUS_USAGE + '\n');
  });
});

describe('StatusClient', () => {
  it('returns typed data and maps errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'aleph-status-client-'));
    const provider = new FakeProvider();
    const server = await startStatusServer({ path: join(dir, 'status.sock'), provider });
    try {
      const client = new StatusClient(server.path);
      assert.deepEqual(await client.vms(), provider.vmList);
      assert.deepEqual(await client.certs(), provider.certList);
      assert.deepEqual(await client.status(), provider.snapshot());
      assert.match(await client.metrics(), /aleph_edge_requests_total/);
      assert.deepEqual(await client.stopVm(HASH_B), { stopped: HASH_B });
      await client.drain();
      provider.reloadResult = { ok: false, errors: ['x:1:1: bad'] };
      assert.deepEqual(await client.reload(), provider.reloadResult);

      await assert.rejects(client.stopVm('zz'), (err: unknown) => {
        assert.ok(err instanceof StatusClientError);
        assert.equal(err.status, 400);
        assert.match(err.message, /malformed program hash/);
        return true;
      });
      provider.failWith = new Error('boom');
      await assert.rejects(client.vms(), { status: 500, message: 'internal error' });
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says when the socket is missing', async () => {
    const client = new StatusClient('/nonexistent/aleph-edge/status.sock');
    await assert.rejects(client.status(), {
      message: 'no aleph-edge status socket at /nonexistent/aleph-edge/status.sock (is it running?)',
    });
  });
});
