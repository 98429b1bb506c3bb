// ASGI programs through the whole node (TLS, routing, orchestrator, proxy, process
// driver): examples/asgi-counter and a probe app, served by guest/aleph_asgi with
// Debian's python3.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { addLogSink } from '../../src/common/index.js';
import { ROOT } from '../helpers/paths.js';
import { programHash, request, startTestNode, until, type TestNode } from '../helpers/node.js';

const PYTHON = '/usr/bin/python3';

describe('ASGI programs through the node', () => {
  let node: TestNode;
  let stateDir: string;
  const counter = programHash('asgi-counter');
  const probe = programHash('asgi-probe');
  const output: string[] = [];
  const removeSink = addLogSink((record) => {
    if (record.component === 'program' && record.fields.hash === counter.slice(0, 12)) output.push(record.message);
  });

  before(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-asgi-'));
    node = await startTestNode({
      programs: [
        { name: 'asgi-counter', asgi: { app: 'main:app', code: path.join(ROOT, 'examples/asgi-counter') }, env: { ASGI_COUNTER_DIR: stateDir } },
        { name: 'asgi-probe', asgi: { app: 'probe:app', code: path.join(ROOT, 'test/fixtures/asgi') } },
      ],
      orchestrator: ['idle_timeout = "3s"'],
      extra: `[drivers.process]\npython = "${PYTHON}"\n`,
    });
  });
  after(async () => {
    removeSink();
    await node?.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  const get = (hash: string, rest: string) => request(node, { host: node.domain, path: `/vm/${hash}${rest}` });
  const shutdowns = () => output.filter((line) => line === 'asgi-counter: lifespan shutdown').length;

  it('the lifespan startup ran before the first request was let in', async () => {
    const reply = await get(counter, '/');
    assert.equal(reply.status, 200, reply.body);
    assert.equal(reply.body, 'asgi-counter example; lifespan startup ran: true\n');
    assert.equal(reply.headers['aleph-program-itemhash'], counter);
  });

  it('sequential requests reuse one upstream keep-alive connection', async () => {
    // The program's own view of its TCP connections (`client` is the node's client now).
    const peers: number[] = [];
    for (let i = 0; i < 3; i++) {
      const reply = await get(probe, `/n${i}`);
      assert.equal(reply.status, 200, reply.body);
      const body = JSON.parse(reply.body) as { path: string; client: [string, number]; peers: number[] };
      assert.equal(body.path, `/n${i}`);
      assert.deepEqual(body.client, ['127.0.0.1', 0]); // from X-Forwarded-For, port unknown (as uvicorn)
      peers.push(...body.peers);
    }
    assert.equal(new Set(peers).size, 1, `upstream client ports: ${peers.join(', ')}`);
  });

  it('streams server-sent events chunk by chunk', async () => {
    const events = await new Promise<{ data: string[]; firstAt: number; endAt: number }>((resolve, reject) => {
      const data: string[] = [];
      let firstAt = 0;
      https.get({
        host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, agent: false,
        path: `/vm/${counter}/events?count=3&interval=0.5`, headers: { host: node.domain },
      }, (res) => {
        assert.equal(res.headers['content-type'], 'text/event-stream');
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          firstAt ||= performance.now();
          data.push(chunk);
        });
        res.on('end', () => resolve({ data, firstAt, endAt: performance.now() }));
        res.on('error', reject);
      }).on('error', reject);
    });
    assert.equal(events.data.join(''), [1, 2, 3].map((n) => `id: ${n}\ndata: {"n": ${n}}\n\n`).join(''));
    assert.ok(events.data.length >= 3, `events arrived together: ${JSON.stringify(events.data)}`);
    // The first event was in our hands while the app was still sleeping before the others.
    assert.ok(events.endAt - events.firstAt >= 900, `first event ${Math.round(events.endAt - events.firstAt)} ms before the end`);
  });

  it('echoes over a WebSocket through the edge (text, and a large binary message)', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${node.httpsPort}/vm/${counter}/ws`, { ca: node.ca, servername: node.domain, headers: { host: node.domain } } as WebSocket.ClientOptions);
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    const replies: Buffer[] = [];
    const got = new Promise<void>((resolve) => ws.on('message', (data: Buffer) => { replies.push(data); if (replies.length === 2) resolve(); }));
    const big = Buffer.alloc(300_000, 7);
    ws.send('hello');
    ws.send(big);
    await got;
    assert.equal(replies[0]!.toString(), 'hello');
    assert.deepEqual(replies[1], big);
    ws.close();
  });

  it('the counter survives a stop: SIGTERM runs the lifespan shutdown, the file keeps the count', async () => {
    assert.equal((await get(counter, '/state/increment')).body, '1\n');
    assert.equal((await get(counter, '/state/increment')).body, '2\n');
    const before = shutdowns();
    assert.equal(await node.node.gateway.stop(counter), true);
    await until(() => shutdowns() === before + 1, 10_000, 'lifespan shutdown on stop');
    assert.ok(output.includes('aleph_asgi: stopped'));
    assert.equal((await get(counter, '/state/increment')).body, '3\n');
    assert.equal(await readFile(path.join(stateDir, 'counter'), 'utf8'), '3\n');
  });

  it('an idle program is stopped after idle_timeout, with its lifespan shutdown', async () => {
    assert.equal((await get(counter, '/')).status, 200);
    const before = shutdowns();
    await until(() => !node.node.gateway.list().some((v) => v.hash === counter), 15_000, 'the idle stop');
    await until(() => shutdowns() === before + 1, 5_000, 'lifespan shutdown on the idle stop');
  });
});
