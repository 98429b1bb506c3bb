import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import https from 'node:https';
import tls from 'node:tls';
import WebSocket from 'ws';
import { hashToLabel } from '../../src/common/index.js';
import { example, fixtureProgram } from '../helpers/paths.js';
import { programHash, request, startTestNode, until, type TestNode } from '../helpers/node.js';

describe('edge -> routing -> orchestrator -> proxy, through real TLS and real programs', () => {
  let node: TestNode;
  const counter = programHash('counter');
  const echo = programHash('echo');
  const sse = programHash('sse');
  const sockets = programHash('sockets');

  before(async () => {
    node = await startTestNode({
      programs: [
        { name: 'counter', script: example('counter') },
        { name: 'echo', script: example('echo') },
        { name: 'sse', script: example('sse') },
        { name: 'sockets', script: fixtureProgram('sockets.js') },
      ],
      extra: `[[routes]]\nhost = "app.example.com"\nprogram = "${counter}"\n`,
    });
  });
  after(() => node.close());

  it('serves the counter by path, then by base32 host, from one warm execution', async () => {
    const first = await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` });
    assert.equal(first.status, 200);
    assert.equal(first.body.trim(), '1');
    assert.equal(first.headers['aleph-program-itemhash'], counter);
    const second = await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` });
    assert.equal(second.body.trim(), '2');
    const byLabel = await request(node, { host: `${hashToLabel(counter)}.${node.domain}`, path: '/state/increment' });
    assert.equal(byLabel.status, 200);
    assert.equal(byLabel.body.trim(), '3');
    const byRoute = await request(node, { host: 'app.example.com', path: '/state/increment' });
    assert.equal(byRoute.body.trim(), '4');
    const vms = node.node.gateway.list().filter((v) => v.hash === counter);
    assert.equal(vms.length, 1);
    assert.equal(vms[0]!.requests, 4);
  });

  it('answers the error contract: 404 unknown program, 400 malformed hash, 404 unknown host', async () => {
    const unknown = await request(node, { host: node.domain, path: `/vm/${'ab'.repeat(32)}/` });
    assert.equal(unknown.status, 404);
    const malformed = await request(node, { host: node.domain, path: '/vm/xyz/' });
    assert.equal(malformed.status, 400);
    assert.match(malformed.body, /malformed/);
    const traversal = await request(node, { host: node.domain, path: `/vm/${counter}/../../etc/passwd` });
    assert.equal(traversal.status, 400);
    // SNI for our domain, Host for nobody: routed by Host, so 404.
    const host = await request(node, { host: 'nobody.example.net', servername: node.domain, path: '/' });
    assert.equal(host.status, 404);
    for (const reply of [unknown, malformed, host]) assert.doesNotMatch(reply.body, /at .*\.js:\d+/);
  });

  it('serves the node pages on the bare domain', async () => {
    const index = await request(node, { host: node.domain, path: '/' });
    assert.equal(index.status, 200);
    assert.match(index.body, /Aleph compute node <code>edge\.test<\/code>/);
    assert.match(String(index.headers.server), /^aleph-vm\/\d+\.\d+\.\d+$/);
    assert.equal(index.headers['x-aleph-edge-version'], 'test');
    assert.equal((await request(node, { host: node.domain, path: '/nothing-here' })).status, 404);
  });

  it('drops client forwarding and hop-by-hop headers and sets its own', async () => {
    const reply = await request(node, {
      host: node.domain,
      path: `/vm/${sockets}/headers`,
      headers: {
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-proto': 'http',
        'x-forwarded-host': 'evil.example',
        'x-real-ip': '6.6.6.6',
        forwarded: 'for=6.6.6.6;proto=http',
        connection: 'keep-alive, x-private',
        'x-private': 'secret',
        'x-kept': 'yes',
      },
    });
    assert.equal(reply.status, 200);
    const seen = JSON.parse(reply.body) as Record<string, string>;
    assert.equal(seen['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'https');
    assert.equal(seen['x-forwarded-host'], node.domain);
    assert.equal(seen.forwarded, undefined);
    assert.equal(seen['x-real-ip'], undefined);
    assert.equal(seen['x-private'], undefined);
    assert.equal(seen['x-kept'], 'yes');
  });

  it('forwards a WebSocket echo', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${node.httpsPort}/vm/${echo}/ws`, {
      ca: node.ca, servername: node.domain, headers: { host: node.domain },
    } as WebSocket.ClientOptions);
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    const replies: string[] = [];
    const got = new Promise<void>((resolve) => ws.on('message', (data) => { replies.push(data.toString()); if (replies.length === 2) resolve(); }));
    ws.send('hello');
    ws.send('x'.repeat(70_000));
    await got;
    assert.deepEqual(replies, ['hello', 'x'.repeat(70_000)]);
    ws.close();
  });

  it('streams server-sent events as they are produced', async () => {
    const events: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = https.get({
        host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca,
        path: `/vm/${sse}/events`, headers: { host: node.domain }, agent: false,
      }, (res) => {
        assert.equal(res.headers['content-type']?.startsWith('text/event-stream'), true);
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          for (const line of chunk.split('\n')) if (line.startsWith('data:')) events.push(line);
          if (events.length >= 3) { req.destroy(); resolve(); }
        });
      });
      req.on('error', (e) => (events.length >= 3 ? resolve() : reject(e)));
    });
    // The program streams until the client leaves: a buffering proxy would never deliver these.
    assert.equal(events.length >= 3, true);
  });

  it('closes the upstream socket when the client aborts mid-body', async () => {
    const connections = async () => JSON.parse((await request(node, { host: node.domain, path: `/vm/${sockets}/connections` })).body) as { open: number; uploads_aborted: number };
    await connections(); // boot it
    const socket = tls.connect({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca });
    await new Promise<void>((resolve, reject) => { socket.once('secureConnect', () => resolve()); socket.once('error', reject); });
    socket.write(`POST /vm/${sockets}/upload HTTP/1.1\r\nhost: ${node.domain}\r\ncontent-length: 10000000\r\n\r\n`);
    socket.write(Buffer.alloc(64 * 1024));
    await until(async () => (await connections()).open >= 2, 5000, 'upload to reach the program');
    socket.destroy();
    // The aborted upload's upstream socket must be closed, not left in the pool.
    await until(async () => {
      const c = await connections();
      return c.uploads_aborted === 1 && c.open === 1;
    }, 5000, 'the upstream socket to close');
  });

  it('closes the upstream socket when the client leaves a streaming response', async () => {
    const connections = async () => JSON.parse((await request(node, { host: node.domain, path: `/vm/${sockets}/connections` })).body) as { open: number };
    await new Promise<void>((resolve, reject) => {
      const req = https.get({
        host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca,
        path: `/vm/${sockets}/drip`, headers: { host: node.domain }, agent: false,
      }, (res) => res.once('data', () => { req.destroy(); resolve(); }));
      req.on('error', reject);
    });
    await until(async () => (await connections()).open === 1, 5000, 'the drip socket to close');
  });
});
