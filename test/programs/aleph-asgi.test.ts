// An ASGI program from the Aleph network (a zipped FastAPI app, interface asgi) under
// the process driver: bubblewrap sandbox, the host's python3 with Debian's
// python3-fastapi, our server bound read-only at /opt/aleph-guest.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { addLogSink } from '../../src/common/index.js';
import { findSandbox } from '../../src/programs/aleph/index.js';
import { request, type TestNode } from '../helpers/node.js';
import { ROOT } from '../helpers/paths.js';
import { FakeAlephApi, zip } from '../fixtures/aleph-api/server.js';
import { startAlephNode } from './helpers.js';

const PYTHON = '/usr/bin/python3';
const sandbox = await findSandbox();

function hasFastapi(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import fastapi'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
// Both are installed by .ci/setup.d (aleph.sh: bubblewrap, asgi.sh: python3-fastapi); a missing one is a setup error, not a skip.
if (!sandbox) throw new Error('bubblewrap (bwrap) is not installed (.ci/setup.d/aleph.sh installs it)');
if (!hasFastapi()) throw new Error(`${PYTHON} cannot import fastapi (.ci/setup.d/asgi.sh installs python3-fastapi)`);

describe('an ASGI program from the network under the process driver', () => {
  let api: FakeAlephApi;
  let node: TestNode;
  let hash: string;
  const output: string[] = [];
  const removeSink = addLogSink((record) => {
    if (record.component === 'program') output.push(record.message);
  });

  before(async () => {
    api = new FakeAlephApi();
    await api.start();
    const runtime = api.addStore(Buffer.from('runtime image (not fetched by the process driver)'));
    const code = api.addStore(zip({ 'main.py': { text: readFileSync(path.join(ROOT, 'test/fixtures/asgi/fastapi/main.py')) } }));
    hash = api.addProgram({ code, runtime, entrypoint: 'main:app', edit: (content) => ((content.code as Record<string, unknown>).interface = 'asgi') });
    node = await startAlephNode({ api: api.url, extra: `[drivers.process]\npython = "${PYTHON}"\n` });
  });
  after(async () => {
    removeSink();
    await api?.close();
  });

  it('boots the FastAPI app in the sandbox: lifespan ran, variables set, code read-only at /opt/code', async () => {
    const reply = await request(node, { host: node.domain, path: `/vm/${hash}/` });
    assert.equal(reply.status, 200, reply.body);
    assert.deepEqual(JSON.parse(reply.body), { lifespan: ['startup'], custom: '32', cwd: '/opt/code', code_writable: false });
    assert.equal(reply.headers['aleph-program-itemhash'], hash);
  });

  it('streams a response chunk by chunk', async () => {
    const arrivals = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      https.get({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, path: `/vm/${hash}/stream`, headers: { host: node.domain }, agent: false }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => got.push(chunk));
        res.on('end', () => resolve(got));
        res.on('error', reject);
      }).on('error', reject);
    });
    // Three events 0.3 s apart arrive as (at least) three separate reads, in order.
    assert.equal(arrivals.join(''), 'data: 0\n\ndata: 1\n\ndata: 2\n\n');
    assert.ok(arrivals.length >= 3, `events arrived together: ${JSON.stringify(arrivals)}`);
  });

  it('echoes over a WebSocket through the edge', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${node.httpsPort}/vm/${hash}/ws`, { ca: node.ca, servername: node.domain, headers: { host: node.domain } } as WebSocket.ClientOptions);
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve(data.toString())));
    ws.send('hello from the edge');
    assert.equal(await echoed, 'hello from the edge');
    ws.close();
  });

  it('stopping the node runs the app lifespan shutdown inside the sandbox, and the server exits cleanly', async () => {
    await node.close();
    assert.ok(output.includes('fastapi fixture: shutdown handler ran'), output.join('\n'));
    assert.ok(output.includes('aleph_asgi: stopped'), output.join('\n'));
  });
});
