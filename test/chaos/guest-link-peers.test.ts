// Guest links accept only the program they belong to (docs/security.md, "Guest links").
// A real node runs a local program (process driver) with the guest API on a real
// Redis. The local user `nobody`, and any other process of the node's own user, are
// refused at the program's link (no HTTP answer, nothing read), cannot open its unix
// socket, and 40 connections held by `nobody` are closed at once and leave the
// program's own calls working.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FakeAlephApi } from '../fixtures/aleph-api/server.js';
import { removeRedis, startRedis, type RedisServer } from '../guestapi/redis-harness.js';
import { programHash, request, startTestNode, type TestNode } from '../helpers/node.js';
import { fixtureProgram } from '../helpers/paths.js';

const run = promisify(execFile);
const AS_NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c'];

// argv: host port path. Prints the HTTP answer's first line, or 'closed' when the link hung up without one.
const GET = `
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(('GET %s HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' % sys.argv[3]).encode())
data = b''
try:
    while True:
        chunk = s.recv(65536)
        if not chunk: break
        data += chunk
except OSError:
    pass
print(data.decode(errors='replace').replace('\\r\\n', '\\n') if data else 'closed')
`;

// argv: host port n. Opens n connections and says so; then says how many the link closed
// within 10 s (recv returning end-of-file or a reset), and holds the rest until killed.
const HOLD = `
import socket, sys, time
held = [socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) for _ in range(int(sys.argv[3]))]
print('held', len(held), flush=True)
closed = 0
for s in held:
    try:
        if s.recv(1) == b'': closed += 1
    except ConnectionResetError:
        closed += 1
    except OSError:
        pass
print('closed', closed, flush=True)
time.sleep(600)
`;

// argv: path. Prints 'connected' or the errno.
const UNIX = `
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print('connected')
except OSError as e:
    print(e.errno)
`;

describe('guest links accept only their own program', () => {
  let redis: RedisServer;
  let aleph: FakeAlephApi;
  let node: TestNode;
  let link: { host: string; port: number };
  let unixSocket: string;
  const hash = programHash('link-owner');

  const guestCall = async (method: string, path: string, body?: string) => {
    const reply = await request(node, { host: node.domain, path: `/vm/${hash}/call?method=${method}&path=${encodeURIComponent(path)}`, method: 'POST', body });
    assert.equal(reply.status, 200, reply.body);
    return JSON.parse(reply.body) as { status: number; body: string };
  };

  before(async () => {
    redis = await startRedis();
    aleph = new FakeAlephApi();
    await aleph.start();
    node = await startTestNode({
      programs: [{ name: 'link-owner', script: fixtureProgram('guest-api-client.js') }],
      extra: ['[programs]', `aleph_api = "${aleph.url}"`, '[guest_api]', `redis = "${redis.address}"`].join('\n'),
    });
    const env = JSON.parse((await request(node, { host: node.domain, path: `/vm/${hash}/env` })).body) as Record<string, string>;
    const url = new URL(env.ALEPH_API_HOST!);
    link = { host: url.hostname, port: Number(url.port) };
    unixSocket = env.ALEPH_API_UNIX_SOCKET!;
    assert.deepEqual(await guestCall('PUT', '/cache/secret', 'owner-only'), { status: 200, body: 'true' });
  });
  after(async () => {
    await node?.close();
    await aleph.close();
    await removeRedis(redis);
  });

  it('refuses the local user nobody: no answer, nothing read', async () => {
    const { stdout } = await run('setpriv', [...AS_NOBODY, GET, link.host, String(link.port), '/cache/secret']);
    assert.equal(stdout.trim(), 'closed', `nobody got an answer from the program's guest link: ${stdout}`);
    assert.doesNotMatch(stdout, /owner-only/);
  });

  it("refuses the node's own user when the process is not the program's", async () => {
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(link, () => socket.write('GET /cache/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      let data = '';
      socket.on('data', (chunk) => (data += chunk));
      socket.on('close', () => resolve(data));
      socket.on('error', () => undefined);
    });
    assert.equal(answer, '', 'another process of the same user read the guest API');
  });

  it("the guest API socket cannot be opened by nobody", async () => {
    // The test's node folder is private (mkdtemp); open it so only the node's own modes protect the socket.
    await chmod(node.dir, 0o755);
    const { stdout } = await run('setpriv', [...AS_NOBODY, UNIX, unixSocket]);
    assert.equal(stdout.trim(), '13', `nobody opened ${unixSocket}`);
  });

  it("40 connections held by nobody are closed, and leave the program's own calls working", async () => {
    const holder = spawn('setpriv', [...AS_NOBODY, HOLD, link.host, String(link.port), '40'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const line = (prefix: string) => new Promise<string>((resolve, reject) => {
      const check = () => {
        const found = out.split('\n').find((l) => l.startsWith(prefix));
        if (found) resolve(found.trim());
        return found;
      };
      if (check()) return;
      holder.stdout.on('data', () => check());
      holder.once('exit', (code) => reject(new Error(`holder exited (${code}): ${out}`)));
    });
    holder.stdout.on('data', (chunk) => (out += chunk));
    try {
      assert.equal(await line('held'), 'held 40');
      for (let i = 0; i < 5; i++) assert.deepEqual(await guestCall('GET', '/cache/secret'), { status: 200, body: 'owner-only' });
      assert.equal(await line('closed'), 'closed 40', 'the link closed every connection of nobody');
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
