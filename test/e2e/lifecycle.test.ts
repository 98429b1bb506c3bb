import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { StatusClient } from '../../src/status/index.js';
import { example, fixtureProgram } from '../helpers/paths.js';
import { alive, programHash, request, startTestNode, until, type TestNode } from '../helpers/node.js';

function openWebSocket(node: TestNode, hash: string): Promise<WebSocket> {
  const ws = new WebSocket(`wss://127.0.0.1:${node.httpsPort}/vm/${hash}/ws`, {
    ca: node.ca, servername: node.domain, headers: { host: node.domain },
  } as WebSocket.ClientOptions);
  return new Promise((resolve, reject) => { ws.once('open', () => resolve(ws)); ws.once('error', reject); });
}

function roundTrip(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve) => { ws.once('message', (data) => resolve(data.toString())); ws.send(text); });
}

describe('failures, reload and drain through the whole node', () => {
  it('a program that dies mid-request gives 502, and the next request boots a healthy one', async () => {
    const node = await startTestNode({ programs: [{ name: 'sockets', script: fixtureProgram('sockets.js') }] });
    try {
      const hash = programHash('sockets');
      const first = await request(node, { host: node.domain, path: `/vm/${hash}/` });
      const pid = Number(first.body.split(' ')[1]);
      const crash = await request(node, { host: node.domain, path: `/vm/${hash}/crash` });
      assert.equal(crash.status, 502);
      assert.doesNotMatch(crash.body, /Error|at /);
      await until(() => !alive(pid), 3000, 'the crashed program to be gone');
      const next = await request(node, { host: node.domain, path: `/vm/${hash}/` });
      assert.equal(next.status, 200);
      assert.notEqual(Number(next.body.split(' ')[1]), pid);
    } finally {
      await node.close();
    }
  });

  it('gives 504 when the program does not answer within its request timeout', async () => {
    const node = await startTestNode({ programs: [{ name: 'sockets', script: fixtureProgram('sockets.js'), requestTimeout: '300ms' }] });
    try {
      const hash = programHash('sockets');
      const reply = await request(node, { host: node.domain, path: `/vm/${hash}/sleep?ms=3000` });
      assert.equal(reply.status, 504);
      // The program is still healthy: a fast request right after succeeds.
      assert.equal((await request(node, { host: node.domain, path: `/vm/${hash}/` })).status, 200);
    } finally {
      await node.close();
    }
  });

  it('gives 502 with the reason when a program cannot boot, without a stack trace', async () => {
    const node = await startTestNode({ programs: [{ name: 'broken', script: fixtureProgram('sockets.js'), env: { EXIT_AT_START: '3' } }] });
    try {
      const reply = await request(node, { host: node.domain, path: `/vm/${programHash('broken')}/` });
      assert.equal(reply.status, 502);
      assert.match(reply.body, /program exited during boot \(code 3\)/);
      assert.doesNotMatch(reply.body, /\.js:\d+/);
      const again = await request(node, { host: node.domain, path: `/vm/${programHash('broken')}/` });
      assert.equal(again.status, 502);
      assert.match(again.body, /next attempt in/);
    } finally {
      await node.close();
    }
  });

  it('Retry-After on a 502 from a backing-off boot is the real wait, in every worker', async () => {
    const node = await startTestNode({ workers: 2, programs: [{ name: 'broken', script: fixtureProgram('sockets.js'), env: { EXIT_AT_START: '3' } }] });
    try {
      const path = `/vm/${programHash('broken')}/`;
      // Failures double the wait: 1 s, 2 s, 4 s. Boot until the third one has failed.
      const waits: number[] = [];
      while (waits.length < 3) {
        const reply = await request(node, { host: node.domain, path });
        assert.equal(reply.status, 502);
        const retryAfter = Number(reply.headers['retry-after']);
        const announced = /next attempt in (\d+)s/.exec(reply.body);
        if (announced) {
          // Refused while backing off: the header says what the body says.
          assert.equal(retryAfter, Number(announced[1]), reply.body);
          await new Promise((resolve) => setTimeout(resolve, 250));
        } else {
          assert.match(reply.body, /program exited during boot/);
          waits.push(retryAfter);
        }
      }
      assert.deepEqual(waits, [1, 2, 4]);
      const refused = await request(node, { host: node.domain, path });
      assert.match(refused.body, /next attempt in [34]s/);
      assert.ok(Number(refused.headers['retry-after']) >= 3, `retry-after ${String(refused.headers['retry-after'])}`);
    } finally {
      await node.close();
    }
  });

  it('reload: a broken file keeps the running config; a good one adds a route without dropping an open WebSocket', async () => {
    const node = await startTestNode({ programs: [{ name: 'echo', script: example('echo') }, { name: 'counter', script: example('counter') }] });
    try {
      const echo = programHash('echo');
      const counter = programHash('counter');
      const ws = await openWebSocket(node, echo);
      assert.equal(await roundTrip(ws, 'before'), 'before');
      const original = await readFile(node.configFile, 'utf8');
      const client = new StatusClient(node.socket);

      await writeFile(node.configFile, original + '\n[orchestrator.nope]\n');
      const rejected = await client.reload();
      assert.equal(rejected.ok, false);
      assert.match(rejected.errors.join('\n'), /aleph-edge\.toml:\d+:\d+/);
      assert.equal((await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` })).body.trim(), '1');

      assert.equal((await request(node, { host: 'new.example.com', servername: node.domain, path: '/state/increment' })).status, 404);
      await writeFile(node.configFile, original + `\n[[routes]]\nhost = "new.example.com"\nprogram = "${counter}"\n`);
      const applied = await client.reload();
      assert.deepEqual(applied, { ok: true, errors: [] });
      // The new route works, on the same warm execution (counter goes on from 1).
      const routed = await request(node, { host: 'new.example.com', path: '/state/increment' });
      assert.equal(routed.body.trim(), '2');
      assert.equal(await roundTrip(ws, 'after'), 'after');
      ws.close();
    } finally {
      await node.close();
    }
  });

  it('reload: executions of removed programs are drained', async () => {
    const node = await startTestNode({ programs: [{ name: 'counter', script: example('counter') }] });
    try {
      const counter = programHash('counter');
      await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` });
      const pid = node.node.gateway.list()[0]!.pid!;
      const original = await readFile(node.configFile, 'utf8');
      await writeFile(node.configFile, original.slice(0, original.indexOf('[[programs.local]]')));
      assert.equal((await new StatusClient(node.socket).reload()).ok, true);
      await until(() => !alive(pid), 5000, 'the removed program to stop');
      assert.equal((await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` })).status, 404);
    } finally {
      await node.close();
    }
  });

  it('drain finishes an in-flight slow request, refuses new work, and leaves no program running', async () => {
    const node = await startTestNode({ programs: [{ name: 'sockets', script: fixtureProgram('sockets.js') }] });
    const hash = programHash('sockets');
    await request(node, { host: node.domain, path: `/vm/${hash}/` });
    const pid = node.node.gateway.list()[0]!.pid!;
    const slow = request(node, { host: node.domain, path: `/vm/${hash}/sleep?ms=700` });
    await until(() => node.node.gateway.list()[0]?.in_flight === 1, 3000, 'the slow request to be in flight');
    const drained = node.close();
    const reply = await slow;
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'slept');
    await drained;
    assert.equal(alive(pid), false);
    await assert.rejects(new Promise((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, path: '/' }, resolve).on('error', reject);
    }), /ECONNREFUSED/);
  });
});
