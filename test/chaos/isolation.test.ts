// A program reaches only its own things (docs/security.md, "Programs from the network
// under the process driver"). Two programs from the Aleph network run sandboxed by the
// process driver (real bubblewrap, real namespaces) next to a real Redis and a host
// service on loopback. From inside program A: Redis, the host's loopback services and
// the node's listeners are unreachable, B's guest API address is A's own, and A's
// network namespace holds none of the host's sockets. From the host, as the local user
// `nobody`: neither program's unix sockets can be opened.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, readdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { findSandbox } from '../../src/programs/aleph/index.js';
import { FakeAlephApi, zip } from '../fixtures/aleph-api/server.js';
import { removeRedis, startRedis, type RedisServer } from '../guestapi/redis-harness.js';
import { request, type TestNode } from '../helpers/node.js';
import { startAlephNode } from '../programs/helpers.js';

const run = promisify(execFile);
const sandbox = await findSandbox();
const skip = sandbox ? false : 'bubblewrap or socat is not installed (.ci/setup.d/aleph.sh installs them)';

// The probe: /env, /connect?host=&port= (a TCP connect), /get?url= and /put?url= (HTTP), /proc-net (its /proc/net/tcp).
function probeZip(): Buffer {
  return zip({
    start: { text: '#!/bin/sh\nexec node probe.mjs\n', executable: true },
    'probe.mjs': {
      text: [
        "import http from 'node:http';",
        "import net from 'node:net';",
        "import { readFileSync } from 'node:fs';",
        'const json = (res, value) => res.end(JSON.stringify(value));',
        'http.createServer(async (req, res) => {',
        "  const url = new URL(req.url, 'http://x');",
        '  const q = (name) => url.searchParams.get(name);',
        "  if (url.pathname === '/env') return json(res, Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('ALEPH_') || k === 'PORT')));",
        "  if (url.pathname === '/connect') {",
        "    const socket = net.connect({ host: q('host'), port: Number(q('port')) });",
        '    socket.setTimeout(3000, () => socket.destroy(new Error(\'timeout\')));',
        "    socket.once('connect', () => { socket.destroy(); json(res, { connected: true }); });",
        "    socket.once('error', (e) => json(res, { connected: false, error: e.code ?? e.message }));",
        '    return;',
        '  }',
        "  if (url.pathname === '/get' || url.pathname === '/put') {",
        '    try {',
        "      const answer = await fetch(q('url'), url.pathname === '/put' ? { method: 'PUT', body: q('value') } : {});",
        '      return json(res, { status: answer.status, body: await answer.text() });',
        '    } catch (e) { return json(res, { error: String(e.cause?.code ?? e.message) }); }',
        '  }',
        "  if (url.pathname === '/proc-net') return res.end(readFileSync('/proc/net/tcp', 'utf8'));",
        "  res.end('ok');",
        "}).listen(Number(process.env.PORT), process.env.HOST);",
      ].join('\n'),
    },
  });
}

interface Connect {
  connected: boolean;
  error?: string;
}

describe('a sandboxed program reaches only its own things', { skip }, () => {
  let api: FakeAlephApi;
  let redis: RedisServer;
  let node: TestNode;
  let hostService: net.Server;
  let hostPort: number;
  let a: string;
  let b: string;

  const call = async <T>(hash: string, target: string): Promise<T> => {
    const reply = await request(node, { host: node.domain, path: `/vm/${hash}${target}` });
    assert.equal(reply.status, 200, reply.body);
    return JSON.parse(reply.body) as T;
  };

  before(async () => {
    api = new FakeAlephApi();
    await api.start();
    redis = await startRedis();
    // A service on the host's loopback, as another program's port or any local daemon would be.
    hostService = net.createServer((socket) => socket.end('host secret\n'));
    await new Promise<void>((resolve) => hostService.listen(0, '127.0.0.1', resolve));
    hostPort = (hostService.address() as net.AddressInfo).port;
    const code = api.addStore(probeZip());
    const runtime = api.addStore(Buffer.from('runtime (not fetched by the process driver)'));
    a = api.addProgram({ code, runtime, variables: { NAME: 'a' } });
    b = api.addProgram({ code, runtime, variables: { NAME: 'b' } });
    node = await startAlephNode({ api: api.url, extra: ['[guest_api]', `redis = "${redis.address}"`].join('\n') });
  });
  after(async () => {
    await node?.close();
    await new Promise<void>((resolve) => hostService.close(() => resolve()));
    await removeRedis(redis);
    await api.close();
  });

  it('cannot reach Redis, the host loopback or the node from inside', async () => {
    const targets: Array<[string, number, string]> = [
      ['127.0.0.1', redis.port, 'Redis'],
      ['127.0.0.1', hostPort, 'a host service on loopback'],
      ['127.0.0.1', node.httpsPort, "the node's TLS listener"],
    ];
    for (const [host, port, what] of targets) {
      const result = await call<Connect>(a, `/connect?host=${host}&port=${port}`);
      assert.equal(result.connected, false, `${what} (${host}:${port}) is reachable from inside a program`);
    }
    // Its network namespace holds its own sockets only: none of the host's listeners show.
    const table = (await request(node, { host: node.domain, path: `/vm/${a}/proc-net` })).body;
    const listeningPorts = table.split('\n').slice(1).filter((line) => line.trim().split(/\s+/)[3] === '0A')
      .map((line) => parseInt(line.trim().split(/\s+/)[1]!.split(':')[1]!, 16));
    for (const port of [redis.port, hostPort, node.httpsPort]) assert.ok(!listeningPorts.includes(port), `host port ${port} is visible in the sandbox's /proc/net/tcp`);
  });

  it("uses its own guest API; another program's guest API address is its own", async () => {
    const envA = await call<Record<string, string>>(a, '/env');
    const envB = await call<Record<string, string>>(b, '/env');
    assert.ok(envB.ALEPH_API_HOST, 'B has a guest API');
    // B stores a secret through its own guest API.
    const stored = await call<{ status: number }>(b, `/put?url=${encodeURIComponent(`${envB.ALEPH_API_HOST}/cache/secret`)}&value=b-only`);
    assert.equal(stored.status, 200);
    assert.equal((await call<{ body: string }>(b, `/get?url=${encodeURIComponent(`${envB.ALEPH_API_HOST}/cache/secret`)}`)).body, 'b-only');
    // A, using B's address, reaches nothing of B's.
    const stolen = await call<{ status?: number; body?: string; error?: string }>(a, `/get?url=${encodeURIComponent(`${envB.ALEPH_API_HOST}/cache/secret`)}`);
    assert.notEqual(stolen.body, 'b-only', "A read B's cache through B's guest API address");
    assert.equal(stolen.status, 404, `A's own cache has no such key (got ${JSON.stringify(stolen)})`);
    assert.equal(envA.ALEPH_API_HOST, envB.ALEPH_API_HOST, 'each program has the same address, inside its own namespace');
    // And Redis holds B's key under B's hash only.
    assert.equal((await redis.cli('GET', `ae:cache:${b}:secret`)).trim(), 'b-only');
  });

  it('its port and guest API are unix sockets only the node can open', async () => {
    const root = path.join(node.dir, 'sandbox');
    // The test's node folder is private (mkdtemp); open it so only the node's own modes protect the sockets.
    await chmod(node.dir, 0o755);
    const runs = await readdir(root);
    assert.ok(runs.length >= 2, `one run folder per sandboxed execution (${runs.join(', ')})`);
    for (const folder of runs) {
      const socket = path.join(root, folder, 'http.sock');
      // As the local user nobody: the 0700 folder refuses the path.
      const attempt = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c',
        'import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n  s.connect(sys.argv[1]); print("connected")\nexcept OSError as e: print(e.errno)', socket]);
      assert.equal(attempt.stdout.trim(), '13', `nobody opened ${socket} (EACCES expected, got ${attempt.stdout.trim()})`);
    }
  });
});
