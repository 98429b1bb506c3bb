// The guest API through a whole node: process-driver programs (a small node script)
// get ALEPH_* variables, reach $ALEPH_API_HOST, use the cache (real Redis) and the
// Aleph API pass-through (the stand-in API); when an execution ends, for whatever
// reason, its socket and its listener are gone.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { FakeAlephApi } from '../fixtures/aleph-api/server.js';
import { fixtureProgram } from '../helpers/paths.js';
import { programHash, request, startTestNode, until, type TestNode } from '../helpers/node.js';
import { promtoolCheck } from '../helpers/promtool.js';
import { removeRedis, startRedis, type RedisServer } from './redis-harness.js';

interface Env {
  ALEPH_API_HOST: string;
  ALEPH_API_UNIX_SOCKET: string;
  ALEPH_REMOTE_CRYPTO_HOST: string;
  ALEPH_REMOTE_CRYPTO_UNIX_SOCKET: string;
  ALEPH_ADDRESS_TO_USE: string;
}

/** Unix socket paths bound right now, from the kernel's table. */
function boundUnixSockets(): string[] {
  return readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1).map((line) => line.trim().split(/\s+/)[7] ?? '').filter(Boolean);
}

/** TCP ports listening on 127.0.0.2 (the guest-links' address) right now (state 0A), from the kernel's table. */
function listeningPorts(): number[] {
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[3] === '0A' && f[1]?.startsWith('0200007F:'))
    .map((f) => parseInt(f[1]!.split(':')[1]!, 16));
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('guest API through the node (process driver)', () => {
  let redis: RedisServer;
  let aleph: FakeAlephApi;
  let node: TestNode;
  const a = programHash('guest-a');
  const b = programHash('guest-b');

  before(async () => {
    redis = await startRedis();
    aleph = new FakeAlephApi();
    await aleph.start();
    const script = fixtureProgram('guest-api-client.js');
    node = await startTestNode({
      programs: [{ name: 'guest-a', script }, { name: 'guest-b', script }],
      extra: ['[programs]', `aleph_api = "${aleph.url}"`, '[guest_api]', `redis = "${redis.address}"`, 'max_keys = 5'].join('\n'),
    });
  });
  after(async () => {
    await node.close();
    await aleph.close();
    await removeRedis(redis);
  });

  const get = (hash: string, path: string, method = 'GET', body?: string) =>
    request(node, { host: node.domain, path: `/vm/${hash}${path}`, method, body });
  const guestCall = async (hash: string, method: string, path: string, body?: string) => {
    const reply = await get(hash, `/call?method=${method}&path=${encodeURIComponent(path)}`, 'POST', body);
    assert.equal(reply.status, 200, reply.body);
    return JSON.parse(reply.body) as { status: number; body: string };
  };

  it('gives the program the ALEPH_* environment, with its own socket and a loopback port', async () => {
    const env = JSON.parse((await get(a, '/env')).body) as Env;
    // Not 127.0.0.1, where programs listen on ports the driver picks: a link given such a
    // port would answer that program's readiness probe (seen: a program that never
    // listens "ready", its requests answered 404 by the guest API).
    assert.match(env.ALEPH_API_HOST, /^http:\/\/127\.0\.0\.2:\d+$/);
    assert.equal(env.ALEPH_REMOTE_CRYPTO_HOST, env.ALEPH_API_HOST);
    assert.ok(env.ALEPH_API_UNIX_SOCKET.startsWith(`${node.dir}/guest-api/`), env.ALEPH_API_UNIX_SOCKET);
    assert.equal(env.ALEPH_REMOTE_CRYPTO_UNIX_SOCKET, env.ALEPH_API_UNIX_SOCKET);
    assert.equal(env.ALEPH_ADDRESS_TO_USE, '', 'a local program has no sender');
    const other = JSON.parse((await get(b, '/env')).body) as Env;
    assert.notEqual(other.ALEPH_API_HOST, env.ALEPH_API_HOST);
    assert.notEqual(other.ALEPH_API_UNIX_SOCKET, env.ALEPH_API_UNIX_SOCKET);
  });

  it('lets a program set and get its cache keys at $ALEPH_API_HOST, invisible to another program', async () => {
    assert.deepEqual(await guestCall(a, 'PUT', '/cache/visits', '7'), { status: 200, body: 'true' });
    assert.deepEqual(await guestCall(a, 'GET', '/cache/visits'), { status: 200, body: '7' });
    assert.equal((await guestCall(b, 'GET', '/cache/visits')).status, 404);
    assert.deepEqual(JSON.parse((await guestCall(b, 'GET', '/cache/?pattern=*')).body), []);
    assert.deepEqual(JSON.parse((await guestCall(a, 'GET', '/cache/?pattern=*')).body), ['visits']);
    const metrics = node.node.metrics;
    assert.equal(metrics.value('aleph_edge_guest_api_requests_total', { route: 'cache_set', code: '200' }), 1);
    assert.equal(metrics.value('aleph_edge_guest_api_requests_total', { route: 'cache_get', code: '404' }), 1);
    assert.equal(metrics.value('aleph_edge_guest_api_sessions'), 2);
    const lint = await promtoolCheck(metrics.render());
    assert.equal(lint.code, 0, lint.output);
  });

  it('keeps the cache across a restart of the program (a new execution, a new socket)', async () => {
    const before = JSON.parse((await get(a, '/env')).body) as Env;
    assert.equal(await node.node.gateway.stop(a), true);
    const afterEnv = JSON.parse((await get(a, '/env')).body) as Env;
    assert.notEqual(afterEnv.ALEPH_API_UNIX_SOCKET, before.ALEPH_API_UNIX_SOCKET);
    assert.deepEqual(await guestCall(a, 'GET', '/cache/visits'), { status: 200, body: '7' });
  });

  it('passes read-only Aleph API calls through to programs.aleph_api', async () => {
    const store = aleph.addStore(Buffer.from('hello blob'));
    const listed = await guestCall(a, 'GET', `/api/v0/messages.json?hashes=${store}`);
    assert.equal(listed.status, 200);
    assert.equal((JSON.parse(listed.body) as { messages: Array<{ item_hash: string }> }).messages[0]?.item_hash, store);
    const one = await guestCall(a, 'GET', `/api/v0/messages/${store}`);
    assert.equal((JSON.parse(one.body) as { message: { item_hash: string } }).message.item_hash, store);
    const itemHash = (aleph.messages.get(store)!.content as { item_hash: string }).item_hash;
    assert.deepEqual(await guestCall(a, 'GET', `/api/v0/storage/raw/${itemHash}`), { status: 200, body: 'hello blob' });
    assert.equal((await guestCall(a, 'POST', '/api/v0/p2p/pubsub/pub', '{}')).status, 501);
  });

  it('removes the socket and the listener when the execution stops, and when it crashes', async () => {
    for (const end of ['stop', 'crash'] as const) {
      const env = JSON.parse((await get(b, '/env')).body) as Env;
      const port = Number(new URL(env.ALEPH_API_HOST).port);
      assert.ok(existsSync(env.ALEPH_API_UNIX_SOCKET));
      assert.ok(boundUnixSockets().includes(env.ALEPH_API_UNIX_SOCKET));
      assert.ok(listeningPorts().includes(port));
      if (end === 'stop') assert.equal(await node.node.gateway.stop(b), true);
      else await get(b, '/exit');
      await until(() => !existsSync(env.ALEPH_API_UNIX_SOCKET) && !listeningPorts().includes(port), 10_000, `${end}: socket and listener gone`);
      assert.equal(boundUnixSockets().includes(env.ALEPH_API_UNIX_SOCKET), false, `${end}: no unix socket left bound`);
      assert.equal(await refused(port), true, `${end}: port closed`);
    }
  });

  it('leaves no socket behind after many boots, and none after drain', async () => {
    for (let i = 0; i < 5; i++) {
      await get(b, '/env');
      await node.node.gateway.stop(b);
    }
    await get(a, '/env');
    // Accepted connections show the listener's path too: count paths, not entries.
    const mine = () => [...new Set(boundUnixSockets().filter((p) => p.startsWith(`${node.dir}/guest-api/`)))];
    assert.equal(mine().length, 1, `only the running program has a socket: ${mine().join(' ')}`);
    await node.node.drain();
    assert.deepEqual(mine(), [], 'none after drain');
  });
});
