// The example programs, run through the process driver as the node would run them.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { setLogLevel } from '../../src/common/index.js';
import { ProcessDriver, waitForHttp, type Instance } from '../../src/drivers/index.js';
import { examplePath, httpGet, nextSlot, nodeProgram } from './helpers.js';

setLogLevel('silent');

const driver = new ProcessDriver({ stopGraceMs: 2000 });

async function startExample(name: string): Promise<Instance & { endpoint: { kind: 'tcp'; host: string; port: number } }> {
  const instance = await driver.start(nodeProgram(examplePath(name)), nextSlot());
  await waitForHttp(instance.endpoint, { path: '', deadline: Date.now() + 10_000 });
  assert.equal(instance.endpoint.kind, 'tcp');
  return instance as Instance & { endpoint: { kind: 'tcp'; host: string; port: number } };
}

/** Stops the example and checks it shut down cleanly on SIGTERM. */
async function stopCleanly(instance: Instance): Promise<void> {
  await instance.stop();
  assert.deepEqual(await instance.exited, { code: 0, signal: null, requested: true });
}

/** Peak resident memory of a process, in MiB (Linux). */
function peakRssMib(pid: number): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : 0;
}

describe('examples/counter', () => {
  it('counts, serves a short index, 404s elsewhere', async () => {
    const counter = await startExample('counter');
    const first = await httpGet(counter.endpoint, '/state/increment');
    assert.equal(first.body, '1');
    assert.match(String(first.headers['content-type']), /^text\/plain/);
    assert.equal((await httpGet(counter.endpoint, '/state/increment')).body, '2');
    const index = await httpGet(counter.endpoint, '/');
    assert.equal(index.status, 200);
    assert.ok(index.body.length > 0);
    assert.equal((await httpGet(counter.endpoint, '/nope')).status, 404);
    await stopCleanly(counter);
  });
});

describe('examples/echo', () => {
  let echo: Awaited<ReturnType<typeof startExample>>;
  before(async () => {
    echo = await startExample('echo');
  });
  after(async () => {
    await stopCleanly(echo);
  });

  it('describes a request', async () => {
    const res = await httpGet(echo.endpoint, '/some/path?x=1');
    const body = JSON.parse(res.body) as Record<string, unknown>;
    assert.equal(body.method, 'GET');
    assert.equal(body.path, '/some/path?x=1');
    assert.equal(body.body_bytes, 0);
    assert.equal(body.body_sha256, createHash('sha256').digest('hex'));
    assert.equal((body.headers as Record<string, string>).host, `127.0.0.1:${echo.endpoint.port}`);
  });

  it('hashes a 200 MB streamed upload in flat memory', async () => {
    const CHUNK = 1 << 20;
    const TOTAL_CHUNKS = 200;
    const base = Buffer.alloc(CHUNK);
    for (let i = 0; i < CHUNK; i++) base[i] = (i * 31) & 0xff;
    const expected = createHash('sha256');
    let index = 0;
    // Generated on the fly: each chunk differs by its index, the client never holds more than one.
    const body = new Readable({
      read() {
        if (index === TOTAL_CHUNKS) return void this.push(null);
        const chunk = Buffer.from(base);
        chunk.writeUInt32BE(index++, 0);
        expected.update(chunk);
        this.push(chunk);
      },
    });
    const reply = await new Promise<string>((resolve, reject) => {
      const req = request(
        { host: echo.endpoint.host, port: echo.endpoint.port, path: '/upload', method: 'PUT', agent: false },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      body.pipe(req);
    });
    const json = JSON.parse(reply) as { method: string; body_bytes: number; body_sha256: string; headers: Record<string, string> };
    assert.equal(json.method, 'PUT');
    assert.equal(json.headers['transfer-encoding'], 'chunked');
    assert.equal(json.body_bytes, CHUNK * TOTAL_CHUNKS);
    assert.equal(json.body_sha256, expected.digest('hex'));
    const peak = peakRssMib(echo.pid!);
    assert.ok(peak < 160, `echo peaked at ${peak.toFixed(0)} MiB for a 200 MB upload`);
  });

  it('answers /slow after the requested delay and streams /stream chunks', async () => {
    const t0 = Date.now();
    const slow = await httpGet(echo.endpoint, '/slow?ms=120');
    assert.ok(Date.now() - t0 >= 115);
    assert.deepEqual(JSON.parse(slow.body), { slept_ms: 120 });

    const stream = await httpGet(echo.endpoint, '/stream?chunks=3&interval=20');
    assert.equal(stream.headers['transfer-encoding'], 'chunked');
    assert.equal(stream.body, 'chunk 1\nchunk 2\nchunk 3\n');
  });

  it('echoes WebSocket text, binary and fragmented messages, answers pings, closes cleanly', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${echo.endpoint.port}/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const received: { data: Buffer; binary: boolean }[] = [];
    ws.on('message', (data: Buffer, binary: boolean) => received.push({ data, binary }));
    const next = async (count: number) => {
      const deadline = Date.now() + 5000;
      while (received.length < count) {
        if (Date.now() > deadline) throw new Error(`only ${received.length} messages`);
        await new Promise((r) => setTimeout(r, 5));
      }
      return received[count - 1]!;
    };

    ws.send('hello');
    let msg = await next(1);
    assert.deepEqual([msg.data.toString(), msg.binary], ['hello', false]);

    const medium = 'é'.repeat(200); // 400 bytes: 16-bit length
    ws.send(medium);
    msg = await next(2);
    assert.equal(msg.data.toString(), medium);

    const big = Buffer.alloc(70_000); // 64-bit length
    for (let i = 0; i < big.length; i++) big[i] = i & 0xff;
    ws.send(big);
    msg = await next(3);
    assert.equal(msg.binary, true);
    assert.ok(msg.data.equals(big));

    ws.send('frag', { fin: false });
    ws.send('ment', { fin: true });
    msg = await next(4);
    assert.equal(msg.data.toString(), 'fragment');

    const pong = new Promise<Buffer>((resolve) => ws.once('pong', resolve));
    ws.ping('are you there');
    assert.equal((await pong).toString(), 'are you there');

    const closed = new Promise<number>((resolve) => ws.once('close', resolve));
    ws.close(4000, 'bye');
    assert.equal(await closed, 4000);
  });

  it('refuses WebSocket upgrades on other paths', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${echo.endpoint.port}/other`);
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('error', () => resolve(-1));
    });
    assert.equal(status, 404);
  });
});

describe('examples/sse', () => {
  it('sends at least 3 events in 450 ms, then stops when the client leaves', async () => {
    const sse = await startExample('sse');
    const text = await new Promise<{ type: string; body: string }>((resolve, reject) => {
      const req = request({ host: sse.endpoint.host, port: sse.endpoint.port, path: '/events', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        setTimeout(() => {
          req.destroy();
          resolve({ type: String(res.headers['content-type']), body });
        }, 450);
      });
      req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
      req.end();
    });
    assert.equal(text.type, 'text/event-stream');
    const events = text.body.split('\n\n').filter((e) => e.length > 0);
    assert.ok(events.length >= 3, `${events.length} events`);
    events.forEach((event, i) => {
      const [id, data] = event.split('\n');
      assert.equal(id, `id: ${i + 1}`);
      const payload = JSON.parse(data!.replace(/^data: /, '')) as { n: number; time: string };
      assert.equal(payload.n, i + 1);
      assert.ok(!Number.isNaN(Date.parse(payload.time)));
    });
    await stopCleanly(sse);
  });
});
