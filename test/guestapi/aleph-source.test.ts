// The guest API of a program from the Aleph network (process driver under bubblewrap,
// stand-in Aleph API): ALEPH_ADDRESS_TO_USE is the message's sender, the sandboxed
// program reaches its guest API inside its own network namespace, and what the node fetched to boot it (its
// PROGRAM message, its code blob) is served from the node's caches, not asked again.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { findSandbox } from '../../src/programs/aleph/index.js';
import { request } from '../helpers/node.js';
import { FakeAlephApi, SENDER, zip } from '../fixtures/aleph-api/server.js';
import { startAlephNode } from '../programs/helpers.js';

const sandbox = await findSandbox();
const skip = sandbox ? false : 'bubblewrap (bwrap) is not installed (.ci/setup.d/aleph.sh installs it)';

// The program: /env answers its ALEPH_* variables, /call?path=P answers what GET $ALEPH_API_HOST<P> said.
function clientZip(): Buffer {
  return zip({
    start: { text: '#!/bin/sh\nexec node server.mjs\n', executable: true },
    'server.mjs': {
      text: [
        "import http from 'node:http';",
        'http.createServer(async (req, res) => {',
        "  const url = new URL(req.url, 'http://x');",
        "  if (url.pathname === '/env') return res.end(JSON.stringify(Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('ALEPH_')))));",
        "  if (url.pathname === '/call') {",
        "    const method = url.searchParams.get('method') ?? 'GET';",
        "    const answer = await fetch(process.env.ALEPH_API_HOST + url.searchParams.get('path'), { method, body: method === 'PUT' ? 'v' : undefined });",
        '    const bytes = Buffer.from(await answer.arrayBuffer());',
        "    return res.end(JSON.stringify({ status: answer.status, body: bytes.toString('utf8'), base64: bytes.toString('base64') }));",
        '  }',
        "  res.end('ok');",
        "}).listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '0.0.0.0');",
      ].join('\n'),
    },
  });
}

describe('guest API for programs from the Aleph network', { skip }, () => {
  let api: FakeAlephApi;

  before(async () => {
    api = new FakeAlephApi();
    await api.start();
  });
  after(async () => {
    await api.close();
  });

  it('sets the sender, the guest API inside the sandbox, and serves cached messages and blobs', async () => {
    const codeBytes = clientZip();
    const code = api.addStore(codeBytes);
    const runtime = api.addStore(Buffer.from('runtime (not fetched by the process driver)'));
    const hash = api.addProgram({ code, runtime });
    const node = await startAlephNode({ api: api.url, programs: [], orchestrator: [] });
    try {
      const get = (path: string) => request(node, { host: node.domain, path: `/vm/${hash}${path}` });
      const env = JSON.parse((await get('/env')).body) as Record<string, string>;
      assert.equal(env.ALEPH_ADDRESS_TO_USE, SENDER);
      // Its own guest API, inside its own network namespace: a socket bound into the sandbox and its relay.
      assert.equal(env.ALEPH_API_UNIX_SOCKET, '/run/aleph-edge/api.sock');
      assert.equal(env.ALEPH_API_HOST, 'http://127.0.0.2:8081');

      const before = { ...api.counts };
      const itemHash = (api.messages.get(code)!.content as { item_hash: string }).item_hash;
      const raw = JSON.parse((await get(`/call?path=${encodeURIComponent(`/api/v0/storage/raw/${itemHash}`)}`)).body) as { status: number; base64: string };
      assert.equal(raw.status, 200);
      assert.deepEqual(Buffer.from(raw.base64, 'base64'), codeBytes);
      const message = JSON.parse((await get(`/call?path=${encodeURIComponent(`/api/v0/messages/${hash}`)}`)).body) as { status: number; body: string };
      assert.equal(message.status, 200);
      assert.equal((JSON.parse(message.body) as { message: { item_hash: string } }).message.item_hash, hash);
      const listed = JSON.parse((await get(`/call?path=${encodeURIComponent(`/api/v0/messages.json?hashes=${code}`)}`)).body) as { status: number; body: string };
      assert.equal((JSON.parse(listed.body) as { messages: Array<{ item_hash: string }> }).messages[0]?.item_hash, code);
      assert.equal(api.counts.raw, before.raw, 'the code blob came from the artifact cache');
      assert.equal(api.counts.message + api.counts.messages, before.message + before.messages, 'the messages came from the message cache');
      // Something the node never fetched goes upstream.
      const other = api.addStore(Buffer.from('elsewhere'));
      const fresh = JSON.parse((await get(`/call?path=${encodeURIComponent(`/api/v0/messages/${other}`)}`)).body) as { status: number };
      assert.equal(fresh.status, 200);
      assert.equal(api.counts.message, before.message + 1);
    } finally {
      await node.close();
    }
  });
});
