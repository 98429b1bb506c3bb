// The per-program cache of the guest API against a real redis-server: the routes
// aleph-sdk's VmCache uses (and their verb aliases), namespacing by the socket's
// program, key checks, caps, expiry, and Redis going down and coming back.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { setLogLevel } from '../../src/common/index.js';
import { GuestApi, type GuestApiSession } from '../../src/guestapi/index.js';
import { call, program, settingsFor } from './helpers.js';
import { removeRedis, startRedis, type RedisServer } from './redis-harness.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

describe('guest API cache (real Redis)', () => {
  let redis: RedisServer;
  let dir: string;
  let api: GuestApi;
  let a: GuestApiSession;
  let b: GuestApiSession;

  before(async () => {
    redis = await startRedis();
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-gapi-'));
    api = await GuestApi.create(settingsFor(dir, redis.address, { maxValueBytes: 1024, maxKeys: 3 }), { alephApi: 'http://127.0.0.1:9' });
    a = await api.open(program('a'), 'aaaa-1');
    b = await api.open(program('b'), 'bbbb-1');
  });
  after(async () => {
    await api.close();
    await removeRedis(redis);
    await rm(dir, { recursive: true, force: true });
  });

  it('set, get, list and remove as VmCache sends them (PUT/GET/DELETE /cache/<key>, GET /cache/?pattern=)', async () => {
    const set = await call(a.socket, 'PUT', '/cache/counter', 'forty-two');
    assert.equal(set.status, 200);
    assert.equal(JSON.parse(set.text), true);
    const got = await call(a.socket, 'GET', '/cache/counter');
    assert.equal(got.status, 200);
    assert.equal(got.text, 'forty-two');
    assert.deepEqual(JSON.parse((await call(a.socket, 'GET', '/cache/?pattern=count*')).text), ['counter']);
    assert.deepEqual(JSON.parse((await call(a.socket, 'GET', '/cache/?pattern=x*')).text), []);
    assert.equal(JSON.parse((await call(a.socket, 'DELETE', '/cache/counter')).text), 1);
    assert.equal(JSON.parse((await call(a.socket, 'DELETE', '/cache/counter')).text), 0);
    const gone = await call(a.socket, 'GET', '/cache/counter');
    assert.equal(gone.status, 404);
    assert.match(gone.text, /No such key/);
  });

  it('answers the verb forms too (/cache/get|set|remove/<key>, /cache/keys), binary-safe', async () => {
    const bytes = Buffer.from([0, 1, 2, 255, 13, 10, 36]);
    assert.equal((await call(a.socket, 'POST', '/cache/set/blob_1', bytes)).status, 200);
    const got = await call(a.socket, 'GET', '/cache/get/blob_1');
    assert.deepEqual(got.body, bytes);
    assert.deepEqual(JSON.parse((await call(a.socket, 'GET', '/cache/keys')).text), ['blob_1']);
    assert.deepEqual(JSON.parse((await call(a.socket, 'GET', '/cache/keys?pattern=bl?b_*')).text), ['blob_1']);
    assert.equal(JSON.parse((await call(a.socket, 'POST', '/cache/remove/blob_1')).text), 1);
    assert.equal((await call(a.socket, 'GET', '/cache/get/blob_1')).status, 404);
    assert.equal((await call(a.socket, 'GET', '/cache/set/x')).status, 405);
  });

  it("keeps programs apart: B sees none of A's keys, and the same name holds two values", async () => {
    await call(a.socket, 'PUT', '/cache/shared', 'from A');
    await call(b.socket, 'PUT', '/cache/only_b', 'from B');
    assert.equal((await call(b.socket, 'GET', '/cache/shared')).status, 404);
    assert.deepEqual(JSON.parse((await call(b.socket, 'GET', '/cache/?pattern=*')).text), ['only_b']);
    assert.deepEqual(JSON.parse((await call(a.socket, 'GET', '/cache/?pattern=*')).text), ['shared']);
    await call(b.socket, 'PUT', '/cache/shared', 'from B');
    assert.equal((await call(a.socket, 'GET', '/cache/shared')).text, 'from A');
    assert.equal((await call(b.socket, 'GET', '/cache/shared')).text, 'from B');
    // B removing "shared" removes its own only.
    await call(b.socket, 'DELETE', '/cache/shared');
    assert.equal((await call(a.socket, 'GET', '/cache/shared')).text, 'from A');
    // A header naming another program changes nothing: identity is the socket.
    assert.equal((await call(b.socket, 'GET', '/cache/shared', undefined, { 'x-program': 'a'.repeat(64), 'aleph-program-itemhash': 'a'.repeat(64) })).status, 404);
    // In Redis, every key carries its program's hash.
    const keys = (await redis.cli('KEYS', '*')).trim().split('\n').sort();
    assert.ok(keys.every((k) => k.includes('a'.repeat(64)) || k.includes('b'.repeat(64))), keys.join(' '));
    await call(a.socket, 'DELETE', '/cache/shared');
    await call(b.socket, 'DELETE', '/cache/only_b');
  });

  it('rejects bad keys and patterns with 400, before Redis', async () => {
    for (const target of ['/cache/a-b', '/cache/a%2Fb', '/cache/%E2%82%AC', `/cache/${'k'.repeat(257)}`, '/cache/', '/cache/a/b']) {
      const method = target === '/cache/' ? 'PUT' : 'GET';
      const answer = await call(a.socket, method, target, method === 'PUT' ? 'x' : undefined);
      assert.ok(answer.status === 400 || answer.status === 405, `${method} ${target}: ${answer.status}`);
    }
    assert.equal((await call(a.socket, 'GET', '/cache/a-b')).status, 400);
    assert.equal((await call(a.socket, 'GET', '/cache/?pattern=a:b')).status, 400);
    assert.equal((await call(a.socket, 'GET', '/cache/?pattern=[ab]')).status, 400);
  });

  it('caps value size (413) and keys per program (409); overwriting a key when full still works', async () => {
    const big = await call(a.socket, 'PUT', '/cache/big', Buffer.alloc(1025));
    assert.equal(big.status, 413);
    assert.match(big.text, /1024-byte limit/);
    assert.equal((await call(a.socket, 'GET', '/cache/big')).status, 404, 'nothing stored');
    assert.equal((await call(a.socket, 'PUT', '/cache/edge', Buffer.alloc(1024))).status, 200);
    for (const key of ['k2', 'k3']) assert.equal((await call(a.socket, 'PUT', `/cache/${key}`, 'v')).status, 200);
    const full = await call(a.socket, 'PUT', '/cache/k4', 'v');
    assert.equal(full.status, 409);
    assert.match(full.text, /cache full/);
    assert.equal((await call(a.socket, 'PUT', '/cache/k2', 'new')).status, 200, 'an existing key may change');
    assert.equal((await call(a.socket, 'GET', '/cache/k2')).text, 'new');
    assert.equal((await call(b.socket, 'PUT', '/cache/k4', 'v')).status, 200, "the cap is per program: B is not full");
    await call(a.socket, 'DELETE', '/cache/k3');
    assert.equal((await call(a.socket, 'PUT', '/cache/k4', 'v')).status, 200, 'room again after a remove');
    for (const key of ['edge', 'k2', 'k4']) await call(a.socket, 'DELETE', `/cache/${key}`);
    await call(b.socket, 'DELETE', '/cache/k4');
  });

  it('concurrent new keys never exceed the cap', async () => {
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => call(a.socket, 'PUT', `/cache/race_${i}`, 'v')));
    assert.equal(answers.filter((x) => x.status === 200).length, 3);
    assert.equal(answers.filter((x) => x.status === 409).length, 7);
    const keys = JSON.parse((await call(a.socket, 'GET', '/cache/?pattern=race_*')).text) as string[];
    assert.equal(keys.length, 3);
    for (const key of keys) await call(a.socket, 'DELETE', `/cache/${key}`);
  });

  it('answers 503 while Redis is down, keeps serving the rest, and recovers when it is back', async () => {
    await call(a.socket, 'PUT', '/cache/before', 'v');
    await redis.stop();
    const down = await call(a.socket, 'GET', '/cache/before');
    assert.equal(down.status, 503);
    assert.equal(down.headers['retry-after'], '1');
    assert.match(down.text, /cache unavailable/);
    assert.equal((await call(a.socket, 'PUT', '/cache/x', 'v')).status, 503);
    assert.equal((await call(a.socket, 'POST', '/sign', '{}')).status, 501, 'the rest still answers');
    // A fresh execution can still open its socket.
    const c = await api.open(program('c'), 'cccc-1');
    assert.equal((await call(c.socket, 'GET', '/cache/?pattern=*')).status, 503);
    await c.close();
    await redis.start();
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await call(a.socket, 'PUT', '/cache/after', 'back')).status;
      if (status === 200) break;
      await sleep(100);
    }
    assert.equal(status, 200, 'recovered');
    assert.equal((await call(a.socket, 'GET', '/cache/after')).text, 'back');
    await call(a.socket, 'DELETE', '/cache/after');
  });

  it('expires entries after key_ttl, and they leave the listing and the count', async () => {
    const short = await GuestApi.create(settingsFor(path.join(dir, 'ttl'), redis.address, { keyTtlMs: 2_000, maxKeys: 1 }), { alephApi: 'http://127.0.0.1:9' });
    try {
      const s = await short.open(program('d'), 'dddd-1');
      // The TTL is Redis's own (no clock to move): long enough that the two PUTs fall
      // inside it on a loaded machine, then the test waits for the expiry to happen.
      assert.equal((await call(s.socket, 'PUT', '/cache/brief', 'v')).status, 200);
      assert.equal((await call(s.socket, 'PUT', '/cache/second', 'v')).status, 409);
      const deadline = Date.now() + 15_000;
      while ((await call(s.socket, 'GET', '/cache/brief')).status !== 404 && Date.now() < deadline) await sleep(100);
      assert.equal((await call(s.socket, 'GET', '/cache/brief')).status, 404);
      assert.deepEqual(JSON.parse((await call(s.socket, 'GET', '/cache/?pattern=*')).text), []);
      assert.equal((await call(s.socket, 'PUT', '/cache/second', 'v')).status, 200, 'the expired key no longer counts');
    } finally {
      await short.close();
    }
  });

  it('refuses remote signing clearly and unknown paths with 404', async () => {
    const sign = await call(a.socket, 'POST', '/sign', JSON.stringify({ item_content: '{}' }), { 'content-type': 'application/json' });
    assert.equal(sign.status, 501);
    assert.match(sign.text, /remote signing is not available/);
    assert.equal((await call(a.socket, 'GET', '/properties')).status, 501);
    assert.equal((await call(a.socket, 'POST', '/api/v0/ipfs/pubsub/pub', '{}')).status, 501);
    const other = await call(a.socket, 'GET', '/api/v0/aggregates/0xabc.json');
    assert.equal(other.status, 404);
    assert.match(other.text, /not available through the guest API/);
  });

  it('bounds what a guest can hold: connections per execution, header size, idle connections', async () => {
    const open = (socketPath: string) => new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect({ path: socketPath }, () => resolve(socket));
      socket.once('error', reject);
    });
    const ended = (socket: net.Socket) => new Promise<void>((resolve) => {
      socket.resume();
      socket.on('error', () => undefined);
      if (socket.closed) resolve();
      else socket.once('close', () => resolve());
    });
    const tight = await GuestApi.create(settingsFor(path.join(dir, 'tight'), redis.address, { maxConnections: 2 }), { alephApi: 'http://127.0.0.1:9' });
    const idle = await GuestApi.create(settingsFor(path.join(dir, 'idle'), redis.address, { idleTimeoutMs: 300 }), { alephApi: 'http://127.0.0.1:9' });
    try {
      const s = await tight.open(program('f'), 'ffff-1');
      const held = [await open(s.socket), await open(s.socket)];
      const third = await open(s.socket);
      await ended(third);
      // The two held ones still work.
      const answer = await new Promise<string>((resolve) => {
        held[0]!.once('data', (chunk) => resolve(chunk.toString()));
        held[0]!.write('GET /cache/?pattern=* HTTP/1.1\r\nHost: guest\r\n\r\n');
      });
      assert.match(answer, /^HTTP\/1\.1 200/);
      for (const socket of held) socket.destroy();
      const huge = await call(s.socket, 'GET', '/cache/x', undefined, { 'x-pad': 'p'.repeat(20_000) }).catch((error: Error) => error);
      assert.ok(huge instanceof Error || huge.status === 431, 'oversized head refused');
      // A connection that sends nothing is closed after idle_timeout.
      const i = await idle.open(program('f'), 'ffff-2');
      await ended(await open(i.socket));
    } finally {
      await tight.close();
      await idle.close();
    }
  });

  it('close() removes the socket; the session no longer answers', async () => {
    const s = await api.open(program('e'), 'eeee-1');
    assert.ok(existsSync(s.socket));
    const before = api.openSessions;
    await s.close();
    assert.equal(existsSync(s.socket), false);
    assert.equal(api.openSessions, before - 1);
    await assert.rejects(call(s.socket, 'GET', '/cache/?pattern=*'), /ENOENT|ECONNREFUSED/);
    await s.close(); // idempotent
  });
});
