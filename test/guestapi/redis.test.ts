// The node's Redis client (ioredis, configured to fail fast) and the program cache's
// use of it, against real redis-servers: binary values, error replies, db selection;
// failing at once while Redis is down and reconnecting; a peer that never answers;
// one round trip per cache operation (counted by a relay between the node and Redis);
// a Redis on a 0700 unix socket with an ACL user, which the local user nobody cannot use.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { setLogLevel } from '../../src/common/index.js';
import { ProgramCache, RedisClient, RedisReplyError, RedisUnavailableError } from '../../src/guestapi/index.js';
import { until } from '../helpers/node.js';
import { removeRedis, startRedis, type RedisServer } from './redis-harness.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');
const run = promisify(execFile);
const HASH = 'c'.repeat(64);

/**
 * A TCP relay to Redis that counts round trips: a run of client bytes that follows an
 * answer (or opens the connection) is one more trip.
 */
async function countingRelay(port: number): Promise<{ port: number; trips(): number; close(): void }> {
  let trips = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port });
    sockets.add(client).add(upstream);
    let answered = true;
    client.on('data', (chunk) => {
      if (answered) trips++;
      answered = false;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      answered = true;
      client.write(chunk);
    });
    for (const side of [client, upstream]) side.on('error', () => undefined).on('close', () => { client.destroy(); upstream.destroy(); });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    trips: () => trips,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('RedisClient (ioredis)', () => {
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
      assert.equal(await client.connected(2000), true);
      assert.equal(await client.run((r) => r.set('bin', Buffer.from([0, 255, 13, 10]))), 'OK');
      assert.deepEqual(await client.run((r) => r.getBuffer('bin')), Buffer.from([0, 255, 13, 10]));
      assert.equal(await client.run((r) => r.get('missing')), null);
      await assert.rejects(client.run((r) => r.call('NOSUCHCOMMAND')), RedisReplyError);
      assert.equal(await client.run((r) => r.exists('bin')), 1, 'the connection survives an error reply');
      assert.equal((await redis.cli('-n', '3', 'EXISTS', 'bin')).trim(), '1', 'written to db 3');
      assert.equal((await redis.cli('EXISTS', 'bin')).trim(), '0');
    } finally {
      client.close();
    }
  });

  it('fails at once while Redis is down (no queue), then reconnects', async () => {
    const client = new RedisClient({ address: redis.address, timeoutMs: 5000, backoffBaseMs: 50, backoffMaxMs: 200 });
    try {
      assert.equal(await client.connected(5000), true);
      await redis.stop();
      await until(async () => (await client.run((r) => r.ping()).catch((error: unknown) => error)) instanceof RedisUnavailableError, 5000, 'the client to see Redis down');
      // Nothing waits for the 5 s command timeout: ten commands all fail before it could fire once.
      const started = Date.now();
      const results = await Promise.allSettled(Array.from({ length: 10 }, () => client.run((r) => r.ping())));
      assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof RedisUnavailableError));
      assert.ok(Date.now() - started < 5000, 'failed before any command timeout');
      await redis.start();
      await until(async () => (await client.run((r) => r.ping()).catch(() => undefined)) === 'PONG', 10_000, 'the client to reconnect');
    } finally {
      client.close();
    }
  });

  it('a peer that never answers fails commands, it never holds them', async () => {
    const held = new Set<net.Socket>();
    const silent = net.createServer((socket) => {
      held.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    const client = new RedisClient({ address: `redis://127.0.0.1:${port}`, timeoutMs: 200, backoffBaseMs: 10 });
    try {
      await until(() => held.size > 0, 5000, 'the client to connect');
      await assert.rejects(client.run((r) => r.ping()), RedisUnavailableError);
    } finally {
      client.close();
      for (const s of held) s.destroy();
      silent.close();
    }
  });

  it('each cache operation is one round trip', async () => {
    const relay = await countingRelay(redis.port);
    const client = new RedisClient({ address: `redis://127.0.0.1:${relay.port}`, timeoutMs: 2000 });
    const cache = new ProgramCache(client, { maxValueBytes: 1024, maxKeys: 2, ttlMs: 60_000 });
    try {
      assert.equal(await client.connected(2000), true);
      const trips = async (operation: () => Promise<unknown>) => {
        const before = relay.trips();
        await operation();
        return relay.trips() - before;
      };
      assert.equal(await trips(() => cache.set(HASH, 'one', Buffer.from('1'))), 1, 'set');
      assert.equal(await trips(() => cache.set(HASH, 'one', Buffer.from('2'))), 1, 'overwrite');
      assert.equal(await trips(() => cache.get(HASH, 'one')), 1, 'get');
      assert.equal(await trips(() => cache.keys(HASH, '*')), 1, 'keys');
      assert.equal(await trips(() => cache.remove(HASH, 'one')), 1, 'remove');
      // The cap is still checked, in the same single trip.
      await cache.set(HASH, 'a', Buffer.from('a'));
      await cache.set(HASH, 'b', Buffer.from('b'));
      assert.equal(await trips(() => assert.rejects(cache.set(HASH, 'c', Buffer.from('c')), /cache full: this program has 2 keys/)), 1, 'refused set');
      assert.deepEqual(await cache.get(HASH, 'a'), Buffer.from('a'));
    } finally {
      client.close();
      relay.close();
    }
  });
});

describe('Redis for production: a private unix socket, or an ACL user', () => {
  const acl = { user: 'aleph-edge', password: 'test-password-0123456789' };
  const asNobody = ['--reuid=65534', '--regid=65534', '--clear-groups', 'redis-cli'];
  let local: RedisServer;
  let remote: RedisServer;
  before(async () => {
    [local, remote] = await Promise.all([startRedis({ unixSocket: true }), startRedis({ acl })]);
  });
  after(async () => {
    await Promise.all([removeRedis(local), removeRedis(remote)]);
  });

  for (const which of ['unix socket', 'ACL user'] as const) {
    it(`the node uses it through ${which === 'unix socket' ? 'unix:<path>' : 'redis://user:password@host'}; the local user nobody cannot`, async () => {
      const server = which === 'unix socket' ? local : remote;
      const client = new RedisClient({ address: which === 'unix socket' ? `unix:${server.socket!}` : server.address, timeoutMs: 2000 });
      try {
        assert.equal(await client.connected(2000), true);
        const cache = new ProgramCache(client, { maxValueBytes: 1024, maxKeys: 5, ttlMs: 60_000 });
        await cache.set(HASH, 'k', Buffer.from('v'));
        assert.deepEqual(await cache.get(HASH, 'k'), Buffer.from('v'));
        assert.deepEqual(await cache.keys(HASH, '*'), ['k']);
        await cache.set(HASH, 'gone', Buffer.from('x'));
        assert.equal(await cache.remove(HASH, 'gone'), 1);
        // The server's folder (mkdtemp) would hide the socket anyway: open it, so the socket's own mode is what protects.
        await chmod(server.dir, 0o755);
        const target = which === 'unix socket' ? ['-s', server.socket!] : ['-p', String(server.port)];
        const attempt = await run('setpriv', [...asNobody, ...target, 'GET', `ae:cache:${HASH}:k`]).then((r) => r, (error: { stdout: string; stderr: string }) => error);
        const said = `${attempt.stdout}${attempt.stderr}`;
        assert.match(said, which === 'unix socket' ? /Permission denied/ : /NOAUTH|NOPERM|Authentication required/, said);
        assert.doesNotMatch(attempt.stdout, /^v$/m, 'nobody read the value');
      } finally {
        client.close();
      }
    });
  }
});
