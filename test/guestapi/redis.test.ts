// The RESP2 client: reply parsing, and its behaviour towards a real redis-server
// and towards a peer that accepts connections but never answers.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setLogLevel } from '../../src/common/index.js';
import { RedisClient, RedisReplyError, RedisUnavailableError } from '../../src/guestapi/index.js';
import { encodeCommand, parseReply } from '../../src/guestapi/redis.js';
import { removeRedis, startRedis, type RedisServer } from './redis-harness.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

describe('RESP2 parsing', () => {
  it('parses every reply type and waits for incomplete ones', () => {
    const text = Buffer.from('+OK\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nx\r\n:1\r\n-ERR bad\r\n');
    const values: unknown[] = [];
    let offset = 0;
    while (offset < text.length) {
      const parsed = parseReply(text, offset, 1024)!;
      values.push(parsed.value);
      offset = parsed.end;
    }
    assert.deepEqual(values.slice(0, 5), ['OK', 42, Buffer.from('a\r\n'), null, [Buffer.from('x'), 1]]);
    assert.ok(values[5] instanceof RedisReplyError);
    for (let cut = 1; cut < 12; cut++) assert.equal(parseReply(Buffer.from('*2\r\n$1\r\nx\r\n:1\r\n').subarray(0, cut), 0, 1024), undefined);
    assert.throws(() => parseReply(Buffer.from('$99999\r\n'), 0, 1024), /bulk reply/);
    assert.throws(() => parseReply(Buffer.from('?x\r\n'), 0, 1024), /unknown reply type/);
    assert.deepEqual(encodeCommand(['SET', 'k', Buffer.from([0, 13, 10])]), Buffer.concat([Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n'), Buffer.from([0, 13, 10]), Buffer.from('\r\n')]));
  });
});

describe('RedisClient', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await removeRedis(redis);
  });

  it('talks to a real redis-server (binary values, error replies, db selection)', async () => {
    const client = new RedisClient({ address: `${redis.address}/3`, timeoutMs: 2000 });
    try {
      assert.equal(await client.command(['SET', 'bin', Buffer.from([0, 255, 13, 10])]), 'OK');
      assert.deepEqual(await client.command(['GET', 'bin']), Buffer.from([0, 255, 13, 10]));
      assert.equal(await client.command(['GET', 'missing']), null);
      await assert.rejects(client.command(['NOSUCHCOMMAND']), RedisReplyError);
      assert.equal(await client.command(['EXISTS', 'bin']), 1, 'the connection survives an error reply');
      assert.equal((await redis.cli('-n', '3', 'EXISTS', 'bin')).trim(), '1', 'written to db 3');
      assert.equal((await redis.cli('EXISTS', 'bin')).trim(), '0');
    } finally {
      client.close();
    }
  });

  it('fails fast while Redis is down, then reconnects', async () => {
    const client = new RedisClient({ address: redis.address, timeoutMs: 1000, backoffBaseMs: 50, backoffMaxMs: 200 });
    try {
      assert.equal(await client.command(['PING']), 'PONG');
      await redis.stop();
      await assert.rejects(client.command(['PING']), RedisUnavailableError);
      const t0 = Date.now();
      await assert.rejects(client.command(['PING']), RedisUnavailableError);
      assert.ok(Date.now() - t0 < 900, 'no wait for a timeout while down');
      await redis.start();
      let reply: unknown;
      for (let i = 0; i < 50 && reply !== 'PONG'; i++) {
        reply = await client.command(['PING']).catch(() => undefined);
        if (reply !== 'PONG') await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(reply, 'PONG');
    } finally {
      client.close();
    }
  });

  it('times out a peer that never answers, and drops that connection', async () => {
    const held = new Set<net.Socket>();
    const silent = net.createServer((socket) => {
      held.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    const client = new RedisClient({ address: `redis://127.0.0.1:${port}`, timeoutMs: 200, backoffBaseMs: 10 });
    try {
      await assert.rejects(client.command(['PING']), (error: Error) => error instanceof RedisUnavailableError && /did not answer within 200 ms/.test(error.message));
      // The client hung up: the server side sees its connection end.
      const [first] = [...held];
      first!.resume();
      if (!first!.closed) await new Promise<void>((resolve) => first!.once('close', () => resolve()));
      assert.equal(first!.closed, true);
    } finally {
      client.close();
      for (const s of held) s.destroy();
      silent.close();
    }
  });
});
