import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { ReadinessTimeoutError, waitForHttp, type Endpoint } from '../../src/drivers/index.js';
import { pickFreePort } from '../../src/drivers/host/index.js';

function tcp(port: number): Endpoint {
  return { kind: 'tcp', host: '127.0.0.1', port };
}

async function listen(server: Server | TcpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

describe('waitForHttp', () => {
  const servers: (Server | TcpServer)[] = [];
  after(() => servers.forEach((s) => s.close()));

  it('rejects at the deadline when nothing listens on the port', async () => {
    const port = await pickFreePort();
    const t0 = Date.now();
    await assert.rejects(waitForHttp(tcp(port), { path: '', deadline: t0 + 300 }), (err: unknown) => {
      assert.ok(err instanceof ReadinessTimeoutError);
      assert.equal(err.lastError, 'ECONNREFUSED');
      return true;
    });
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 290, `rejected after ${elapsed} ms, before the deadline`);
  });

  it('rejects at the deadline when the port accepts but never answers', async () => {
    const sockets: Socket[] = [];
    const silent = createTcpServer((socket) => sockets.push(socket));
    servers.push(silent);
    const port = await listen(silent);
    const t0 = Date.now();
    await assert.rejects(waitForHttp(tcp(port), { path: '', deadline: t0 + 300 }), ReadinessTimeoutError);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 290, `rejected after ${elapsed} ms, before the deadline`);
    sockets.forEach((s) => s.destroy());
  });

  it('accepts any HTTP answer when no health path is set', async () => {
    const server = createServer((_req, res) => res.writeHead(404).end());
    servers.push(server);
    const port = await listen(server);
    const result = await waitForHttp(tcp(port), { path: '', deadline: Date.now() + 1000 });
    assert.deepEqual(result, { status: 404, attempts: 1 });
  });

  it('waits for a 2xx/3xx on the health path, retrying with backoff', async () => {
    let calls = 0;
    const server = createServer((req, res) => {
      assert.equal(req.url, '/healthz');
      calls++;
      res.writeHead(calls < 4 ? 503 : 200).end();
    });
    servers.push(server);
    const port = await listen(server);
    const t0 = Date.now();
    const result = await waitForHttp(tcp(port), { path: '/healthz', deadline: Date.now() + 2000 });
    assert.deepEqual(result, { status: 200, attempts: 4 });
    // Backoff 5 + 10 + 20 ms before the 4th attempt.
    assert.ok(Date.now() - t0 >= 33);
  });

  it('becomes ready as soon as a late listener comes up', async () => {
    const port = await pickFreePort();
    const server = createServer((_req, res) => res.end('ok'));
    servers.push(server);
    setTimeout(() => server.listen(port, '127.0.0.1'), 150);
    const result = await waitForHttp(tcp(port), { path: '', deadline: Date.now() + 2000 });
    assert.equal(result.status, 200);
    assert.ok(result.attempts > 1);
  });

  it('rejects with the abort reason when the signal aborts', async () => {
    const port = await pickFreePort();
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('program exited')), 50);
    // No deadline to reach: only the abort can end the wait.
    await assert.rejects(waitForHttp(tcp(port), { path: '', deadline: Number.MAX_SAFE_INTEGER, signal: controller.signal }), {
      message: 'program exited',
    });
  });
});
