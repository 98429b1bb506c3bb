// The read-only Aleph API pass-through against the stand-in Aleph API: what goes
// upstream (no client headers, a rebuilt query), what the node's caches answer,
// and the bounds (size, time, bad input).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setLogLevel } from '../../src/common/index.js';
import { GuestApi, type GuestApiSession } from '../../src/guestapi/index.js';
import { FakeAlephApi } from '../fixtures/aleph-api/server.js';
import { call, program, settingsFor } from './helpers.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

describe('guest API: Aleph API pass-through', () => {
  let dir: string;
  let aleph: FakeAlephApi;
  let api: GuestApi;
  let session: GuestApiSession;
  const cachedBlobs = new Map<string, string>();
  const cachedMessages = new Map<string, unknown>();
  let bigHash: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-gpass-'));
    aleph = new FakeAlephApi();
    await aleph.start();
    bigHash = (aleph.messages.get(aleph.addStore(Buffer.alloc(300_000, 7), { chunked: true }))!.content as { item_hash: string }).item_hash;
    api = await GuestApi.create(settingsFor(dir, 'redis://127.0.0.1:9', { maxResponseBytes: 200_000, apiTimeoutMs: 1000 }), {
      alephApi: aleph.url,
      cache: { message: async (hash) => cachedMessages.get(hash), blob: (hash) => cachedBlobs.get(hash) },
    });
    session = await api.open(program('a'), 'pass-1');
  });
  after(async () => {
    await api.close();
    await aleph.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('passes messages.json through with a rebuilt query and none of the client headers', async () => {
    const store = aleph.addStore(Buffer.from('x'));
    const answer = await call(session.socket, 'GET', `/api/v0/messages.json?hashes=${store}&msgTypes=STORE`, undefined, {
      authorization: 'Bearer guest-secret', cookie: 'a=b', 'x-forwarded-for': '6.6.6.6', host: 'evil.example',
    });
    assert.equal(answer.status, 200);
    assert.equal((JSON.parse(answer.text) as { messages: Array<{ item_hash: string }> }).messages[0]?.item_hash, store);
    assert.equal(aleph.lastHeaders.authorization, undefined);
    assert.equal(aleph.lastHeaders.cookie, undefined);
    assert.equal(aleph.lastHeaders['x-forwarded-for'], undefined);
    assert.equal(aleph.lastHeaders.host, `127.0.0.1:${aleph.port}`);
  });

  it('passes a message by hash and a raw blob through, with the upstream status', async () => {
    const store = aleph.addStore(Buffer.from('raw bytes'));
    const one = await call(session.socket, 'GET', `/api/v0/messages/${store}`);
    assert.equal(one.status, 200);
    assert.equal((JSON.parse(one.text) as { message: { item_hash: string } }).message.item_hash, store);
    assert.equal((await call(session.socket, 'GET', `/api/v0/messages/${'0'.repeat(64)}`)).status, 404);
    const itemHash = (aleph.messages.get(store)!.content as { item_hash: string }).item_hash;
    const raw = await call(session.socket, 'GET', `/api/v0/storage/raw/${itemHash}`);
    assert.equal(raw.status, 200);
    assert.equal(raw.text, 'raw bytes');
    assert.equal((await call(session.socket, 'GET', `/api/v0/storage/raw/${'1'.repeat(64)}`)).status, 404);
  });

  it("serves what the node's caches hold without asking upstream", async () => {
    const bytes = Buffer.from('cached blob content');
    const hash = createHash('sha256').update(bytes).digest('hex');
    const file = path.join(dir, 'blob');
    await writeFile(file, bytes);
    cachedBlobs.set(hash, file);
    const message = { item_hash: 'c'.repeat(64), type: 'STORE', content: {} };
    cachedMessages.set('c'.repeat(64), message);
    const before = { ...aleph.counts };
    const raw = await call(session.socket, 'GET', `/api/v0/storage/raw/${hash}`);
    assert.equal(raw.text, 'cached blob content');
    assert.equal(raw.headers['content-length'], String(bytes.length));
    assert.deepEqual(JSON.parse((await call(session.socket, 'GET', `/api/v0/messages/${'c'.repeat(64)}`)).text), { status: 'processed', item_hash: 'c'.repeat(64), message });
    const listed = JSON.parse((await call(session.socket, 'GET', `/api/v0/messages.json?hashes=${'c'.repeat(64)}`)).text) as { messages: unknown[] };
    assert.deepEqual(listed.messages, [message]);
    assert.deepEqual(aleph.counts, before, 'nothing asked upstream');
    // A query beyond one hash goes upstream.
    await call(session.socket, 'GET', `/api/v0/messages.json?hashes=${'c'.repeat(64)}&page=2`);
    assert.equal(aleph.counts.messages, before.messages + 1);
  });

  it('cuts an answer larger than max_response_size, declared or streamed', async () => {
    // Chunked (no Content-Length): the connection is cut once past the cap.
    await assert.rejects(call(session.socket, 'GET', `/api/v0/storage/raw/${bigHash}`), /aborted|socket hang up|ECONNRESET/);
    const declared = aleph.addStore(Buffer.alloc(250_000, 1));
    const itemHash = (aleph.messages.get(declared)!.content as { item_hash: string }).item_hash;
    const refused = await call(session.socket, 'GET', `/api/v0/storage/raw/${itemHash}`);
    assert.equal(refused.status, 502);
    assert.match(refused.text, /larger than the 200000-byte limit/);
  });

  it('rejects bad input with 400 and writes with 405', async () => {
    assert.equal((await call(session.socket, 'GET', '/api/v0/messages/not..a/hash')).status, 404);
    assert.equal((await call(session.socket, 'GET', '/api/v0/messages/bad-hash!')).status, 400);
    // Dot segments are resolved first: this asks for /api/v0/storage/, which is no route.
    assert.equal((await call(session.socket, 'GET', '/api/v0/storage/raw/%2e%2e')).status, 404);
    assert.equal((await call(session.socket, 'GET', '/api/v0/storage/raw/abc%00def')).status, 400);
    assert.equal((await call(session.socket, 'GET', `/api/v0/messages.json?${'a=1&'.repeat(40)}`)).status, 400);
    assert.equal((await call(session.socket, 'GET', '/api/v0/messages.json?bad-name=1')).status, 400);
    assert.equal((await call(session.socket, 'POST', '/api/v0/messages.json', '{}')).status, 405);
  });

  it('answers 502 when the API is down and 504 when it does not answer in time', async () => {
    await aleph.stop();
    try {
      const down = await call(session.socket, 'GET', '/api/v0/messages.json?hashes=x');
      assert.equal(down.status, 502);
      assert.match(down.text, /Aleph API unreachable/);
    } finally {
      await aleph.restart();
    }
    // An API that accepts and never answers.
    const silent = http.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const slow = await GuestApi.create(settingsFor(path.join(dir, 'slow'), 'redis://127.0.0.1:9', { apiTimeoutMs: 300 }), {
      alephApi: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
    });
    try {
      const s = await slow.open(program('b'), 'slow-1');
      const late = await call(s.socket, 'GET', '/api/v0/messages.json');
      assert.equal(late.status, 504);
    } finally {
      await slow.close();
      silent.closeAllConnections();
      silent.close();
    }
  });
});
