// /control/* through a whole node: real TLS, programs.source = "aleph" against the
// stand-in Aleph API, real processes (process driver under bubblewrap), signatures made
// by an independent Python signer. The scheduler allocates a persistent program (it
// starts with no request), refused allocations start nothing, the owner (Ethereum or
// Solana wallet, or a delegate) reads logs over HTTP and WebSocket, reboots and stops.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { findSandbox } from '../../src/programs/aleph/index.js';
import { FakeAlephApi, zip } from '../fixtures/aleph-api/server.js';
import { request, until, type Reply, type TestNode } from '../helpers/node.js';
import { startAlephNode } from '../programs/helpers.js';
import { DELEGATE_KEY, OWNER_KEY, SCHEDULER_KEY, STRANGER_KEY, sign } from './helpers.js';

const sandbox = await findSandbox();
const skip = sandbox ? false : 'bubblewrap (bwrap) is not installed (.ci/setup.d/aleph.sh installs it)';

const TOKEN = 'legacy-scheduler-token';
const SOL_SEED = '22'.repeat(32);

/** A program that prints on start and for each request (its logs are what the owner reads). */
function talkerZip(): Buffer {
  return zip({
    start: { text: '#!/bin/sh\nexec node server.mjs\n', executable: true },
    'server.mjs': {
      text: [
        "import http from 'node:http';",
        "console.log('talker started');",
        'http.createServer((req, res) => {',
        '  console.log(`request ${req.url}`);',
        "  res.end('ok');",
        "}).listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '0.0.0.0');",
      ].join('\n'),
    },
  });
}

describe('/control/* on a node', { skip }, () => {
  let api: FakeAlephApi;
  let node: TestNode;
  let hash: string;
  let solHash: string;
  let owner: string;
  let delegate: string;

  const now = () => Math.floor(Date.now() / 1000);
  const running = (h: string) => node.node.gateway.list().find((e) => e.hash === h && e.state === 'ready');

  async function allocate(body: string, options: { key?: string; iat?: number; sendBody?: string; headers?: Record<string, string> } = {}): Promise<{ reply: Reply; headers: Record<string, string> }> {
    const headers = options.headers ?? { authorization: (await sign({ job: 'allocation', key: options.key ?? SCHEDULER_KEY, method: 'POST', path: '/control/allocations', body, iat: options.iat ?? now() })).authorization };
    const reply = await request(node, { host: node.domain, path: '/control/allocations', method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: options.sendBody ?? body });
    return { reply, headers };
  }

  async function operatorAuth(path: string, method: string, options: { key?: string; seed?: string; time?: number; expires?: number } = {}) {
    const t = options.time ?? Date.now();
    const wallet = options.seed ? { chain: 'SOL', seed: options.seed } : { chain: 'ETH', key: options.key ?? OWNER_KEY };
    return sign({ job: 'operator', wallet, domain: node.domain, method, path, time: new Date(t).toISOString(), expires: new Date(options.expires ?? t + 3600_000).toISOString() });
  }

  async function operate(h: string, operation: string, options: Parameters<typeof operatorAuth>[2] = {}): Promise<Reply> {
    const method = operation === 'logs' ? 'GET' : 'POST';
    const path = `/control/machine/${h}/${operation}`;
    const signed = await operatorAuth(path, method, options);
    return request(node, { host: node.domain, path, method, headers: signed.headers });
  }

  before(async () => {
    api = new FakeAlephApi();
    await api.start();
    owner = (await sign({ job: 'address', key: OWNER_KEY })).address;
    delegate = (await sign({ job: 'address', key: DELEGATE_KEY })).address;
    const solOwner = (await sign({ job: 'address', seed: SOL_SEED })).address;
    const scheduler = (await sign({ job: 'address', key: SCHEDULER_KEY })).address;
    const runtime = api.addStore(Buffer.from('runtime (unused by the process driver)'));
    const code = api.addStore(talkerZip());
    const persistent = (c: Record<string, unknown>) => { c.on = { ...(c.on as object), persistent: true }; };
    hash = api.addProgram({ code, runtime, sender: owner, edit: persistent, volumes: [{ mount: '/var/lib/state', persistence: 'host', name: 'state', size_mib: 1 }] });
    solHash = api.addProgram({ code, runtime, sender: solOwner, variables: { WHO: 'sol' } });
    api.aggregates.set(owner, { security: { authorizations: [{ address: delegate, types: ['INSTANCE'] }, { address: '0x000000000000000000000000000000000000dead', types: ['POST'] }] } });
    node = await startAlephNode({
      api: api.url,
      orchestrator: ['idle_timeout = "1s"'],
      extra: ['[control]', `authorized_allocation_signers = ["${scheduler}"]`, `allocation_token_hash = "${createHash('sha256').update(TOKEN).digest('hex')}"`].join('\n'),
    });
  });
  after(async () => {
    await node?.close();
    await api?.close();
  });

  it('refuses unsigned, wrongly signed, tampered, stale and oversized allocations, starting nothing', async () => {
    const body = JSON.stringify({ persistent_vms: [hash], instances: [] });
    const unsigned = await request(node, { host: node.domain, path: '/control/allocations', method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const wrongSigner = (await allocate(body, { key: STRANGER_KEY })).reply;
    const tampered = (await allocate(JSON.stringify({ persistent_vms: [], instances: [] }), { sendBody: body })).reply;
    const stale = (await allocate(body, { iat: now() - 400 })).reply;
    const badToken = (await allocate(body, { headers: { 'x-auth-signature': 'not-the-token' } })).reply;
    for (const [what, reply] of Object.entries({ unsigned, wrongSigner, tampered, stale, badToken })) {
      assert.equal(reply.status, 401, what);
      assert.equal(reply.body, 'Authentication token received is invalid', what);
    }
    const huge = await request(node, { host: node.domain, path: '/control/allocations', method: 'POST', body: 'x'.repeat(300 * 1024) });
    assert.equal(huge.status, 413);
    assert.equal(node.node.metrics.value('aleph_edge_control_requests_total', { kind: 'allocations', status: '401' }), 5);
    assert.deepEqual(node.node.gateway.kept(), []);
    assert.deepEqual(node.node.gateway.list(), []);
  });

  it('a signed allocation starts the persistent program within seconds with no request; a replay is refused', async () => {
    const body = JSON.stringify({ persistent_vms: [hash], instances: [], on_demand_vms: null, jobs: null });
    const { reply, headers } = await allocate(body);
    assert.equal(reply.status, 200, reply.body);
    assert.deepEqual(JSON.parse(reply.body), { success: true, successful: [hash], failing: [], stopped: [], errors: {} });
    await until(() => running(hash) !== undefined, 20_000, 'the allocated program running');
    assert.equal(running(hash)!.requests, 0, 'started without a request');
    assert.deepEqual(node.node.gateway.kept(), [{ hash, reason: 'allocation' }]);
    const replay = await request(node, { host: node.domain, path: '/control/allocations', method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    assert.equal(replay.status, 401);
    // Well past idle_timeout (1 s): a kept program is not stopped for idleness.
    const pid = running(hash)!.pid;
    const t0 = Date.now();
    await until(() => Date.now() - t0 > 2_500, 5_000, 'idle time');
    assert.equal(running(hash)?.pid, pid);
  });

  it('answers per program for unknown hashes (503 failing) and takes the deprecated token', async () => {
    const unknown = 'ab'.repeat(32);
    const body = JSON.stringify({ persistent_vms: [hash], instances: [unknown] });
    const { reply } = await allocate(body, { headers: { 'x-auth-signature': TOKEN } });
    assert.equal(reply.status, 207, reply.body);
    const answer = JSON.parse(reply.body) as { success: boolean; successful: string[]; failing: string[]; errors: Record<string, string> };
    assert.equal(answer.success, false);
    assert.deepEqual(answer.successful, [hash]);
    assert.deepEqual(answer.failing, [unknown]);
    assert.match(answer.errors[unknown]!, /^NotFoundError\(/);
    assert.equal(node.node.gateway.kept().length, 1, 'the unknown one is not kept');
  });

  it('the owner reads logs over HTTP and WebSocket; another wallet gets 403; an expired key or stale operation 401', async () => {
    await until(() => node.node.gateway.logs(hash).some((e) => e.line === 'talker started'), 10_000, 'the start line');
    const logs = await operate(hash, 'logs');
    assert.equal(logs.status, 200, logs.body);
    const entries = JSON.parse(logs.body) as Array<Record<string, string>>;
    const started = entries.find((e) => e.MESSAGE === 'talker started');
    assert.ok(started, logs.body);
    assert.equal(started.file, 'stdout');
    assert.equal(started.SYSLOG_IDENTIFIER, `vm-${hash}-stdout`);
    assert.ok(!Number.isNaN(Date.parse(started.__REALTIME_TIMESTAMP!)));

    const stranger = await operate(hash, 'logs', { key: STRANGER_KEY });
    assert.equal(stranger.status, 403);
    assert.equal(stranger.body, 'Unauthorized sender');
    const expired = await operate(hash, 'logs', { time: Date.now(), expires: Date.now() - 60_000 });
    assert.equal(expired.status, 401);
    assert.deepEqual(JSON.parse(expired.body), { error: 'Token expired' });
    const stale = await operate(hash, 'logs', { time: Date.now() - 5 * 60_000 });
    assert.equal(stale.status, 401);
    assert.deepEqual(JSON.parse(stale.body), { error: 'Time is too far in the past' });
    const delegated = await operate(hash, 'logs', { key: DELEGATE_KEY });
    assert.equal(delegated.status, 200, 'an address in the owner\'s security aggregate');

    // WebSocket: credentials in the first message; then live lines.
    const path = `/control/machine/${hash}/stream_logs`;
    const open = () => new WebSocket(`wss://127.0.0.1:${node.httpsPort}${path}`, { ca: node.ca, servername: node.domain, headers: { host: node.domain } } as WebSocket.ClientOptions);
    const messages = (ws: WebSocket) => {
      const got: Array<Record<string, string>> = [];
      ws.on('message', (data) => got.push(JSON.parse(data.toString()) as Record<string, string>));
      return got;
    };
    for (const first of ['not json', '{"no": "auth"}', JSON.stringify({ auth: { 'X-SignedPubKey': 'x' } })]) {
      const bad = open();
      const badGot = messages(bad);
      await new Promise((resolve) => bad.once('open', resolve));
      bad.send(first);
      await new Promise((resolve) => bad.once('close', resolve));
      assert.equal(badGot.length, 1, first);
      assert.equal(badGot[0]!.status, 'failed', first);
    }
    const refusedWs = open();
    const refusedGot = messages(refusedWs);
    await new Promise((resolve) => refusedWs.once('open', resolve));
    refusedWs.send(JSON.stringify({ auth: (await operatorAuth(path, 'GET', { key: STRANGER_KEY })).auth }));
    await new Promise((resolve) => refusedWs.once('close', resolve));
    assert.deepEqual(refusedGot, [{ status: 'failed', reason: 'unauthorized sender' }]);

    const ws = open();
    const got = messages(ws);
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ auth: (await operatorAuth(path, 'GET')).auth }));
    await until(() => got.some((m) => m.status === 'connected'), 10_000, 'connected');
    assert.deepEqual(got[0], { status: 'connected' });
    assert.equal((await request(node, { host: node.domain, path: `/vm/${hash}/live-line` })).status, 200);
    await until(() => got.some((m) => m.message === 'request /live-line'), 10_000, 'the live line');
    assert.equal(got.find((m) => m.message === 'request /live-line')!.type, 'stdout');
    ws.close();
  });

  it('a Solana wallet owning a program reads its logs', async () => {
    assert.equal((await request(node, { host: node.domain, path: `/vm/${solHash}/sol` })).status, 200);
    await until(() => node.node.gateway.logs(solHash).some((e) => e.line === 'request /sol'), 10_000, 'the line');
    const logs = await operate(solHash, 'logs', { seed: SOL_SEED });
    assert.equal(logs.status, 200, logs.body);
    assert.ok((JSON.parse(logs.body) as Array<{ MESSAGE: string }>).some((e) => e.MESSAGE === 'request /sol'));
    assert.equal((await operate(solHash, 'logs')).status, 403, 'the Ethereum owner of the other program is nobody here');
  });

  it('the owner reboots and stops; refusals stop nothing; an allocation that no longer lists it stops it', async () => {
    const before = running(hash)!.pid;
    assert.equal((await operate(hash, 'stop', { key: STRANGER_KEY })).status, 403);
    assert.equal(running(hash)?.pid, before, 'a refused stop stops nothing');
    const reboot = await operate(hash, 'reboot');
    assert.equal(reboot.status, 200);
    assert.equal(reboot.body, `Rebooted VM with ref ${hash}`);
    await until(() => running(hash) !== undefined && running(hash)!.pid !== before, 20_000, 'a new execution');
    const stop = await operate(hash, 'stop');
    assert.equal(stop.status, 200);
    assert.equal(stop.body, `Stopped VM with ref ${hash}`);
    assert.equal(running(hash), undefined);
    assert.equal((await operate(hash, 'stop')).body, 'Already stopped, nothing to do');
    // Erase: its persistent volume goes (the refused attempt leaves it).
    const volume = path.join((node as TestNode & { cacheDir: string }).cacheDir, 'volumes', hash, 'state');
    await writeFile(path.join(volume, 'data'), 'owner data');
    assert.equal((await operate(hash, 'erase', { key: STRANGER_KEY })).status, 403);
    assert.equal(await readFile(path.join(volume, 'data'), 'utf8'), 'owner data');
    const erase = await operate(hash, 'erase');
    assert.equal(erase.status, 200, erase.body);
    assert.equal(erase.body, `Erased VM with ref ${hash}`);
    await assert.rejects(stat(path.join(volume, 'data')), { code: 'ENOENT' });
    assert.deepEqual(node.node.gateway.kept(), [], 'erased: no longer kept');
    const missing = await operate('cd'.repeat(32), 'stop');
    assert.equal(missing.status, 404);

    // Started again by the next allocation, then stopped by one that drops it.
    assert.equal((await allocate(JSON.stringify({ persistent_vms: [hash], instances: [] }))).reply.status, 200);
    await until(() => running(hash) !== undefined, 20_000, 'allocated again');
    const { reply } = await allocate(JSON.stringify({ persistent_vms: [], instances: [] }));
    assert.equal(reply.status, 200, reply.body);
    assert.deepEqual(JSON.parse(reply.body), { success: true, successful: [], failing: [], stopped: [hash], errors: {} });
    assert.equal(running(hash), undefined);
    assert.deepEqual(node.node.gateway.kept(), []);
  });

  it('a node restarted on the same state starts the allocated program again, with no request', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-control-'));
    const extra = '[control]\nauthorized_allocation_signers = []';
    try {
      let first: TestNode | undefined = await startAlephNode({ api: api.url, dir, keepCache: true, extra });
      try {
        const { cacheDir } = first as TestNode & { cacheDir: string };
        // This node's own allocation, through the orchestrator (the HTTP path is proven above).
        await first.node.gateway.keep(hash, 'allocation');
        await until(() => first!.node.gateway.list().some((e) => e.hash === hash && e.state === 'ready'), 20_000, 'kept on the first node');
        await first.close();
        first = undefined;
        const second = await startAlephNode({ api: api.url, dir, cacheDir, extra });
        try {
          await until(() => second.node.gateway.list().some((e) => e.hash === hash && e.state === 'ready'), 20_000, 'started again at boot');
          assert.deepEqual(second.node.gateway.kept(), [{ hash, reason: 'allocation' }]);
          assert.equal(second.node.gateway.list().find((e) => e.hash === hash)!.requests, 0);
        } finally {
          await second.close();
        }
      } finally {
        await first?.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('notify: a PROGRAM is not an instance; bad JSON is refused', async () => {
    const notify = (body: string) => request(node, { host: node.domain, path: '/control/allocation/notify', method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const program = await notify(JSON.stringify({ instance: hash }));
    assert.equal(program.status, 400);
    assert.equal(program.body, 'Message is not an instance');
    assert.equal((await notify('{')).status, 400);
    assert.equal((await notify(JSON.stringify({ instance: 'ef'.repeat(32) }))).status, 404);
    assert.deepEqual(node.node.gateway.kept(), []);
  });

  it('notify verifies hold and credit payments from the Aleph API, refuses streams, and keeps nothing unpaid', async () => {
    const notify = (h: string) => request(node, { host: node.domain, path: '/control/allocation/notify', method: 'POST', body: JSON.stringify({ instance: h }) });
    const payer = '0x00000000000000000000000000000000000000aa';
    const instance = (payment: Record<string, unknown>) => api.addMessage('INSTANCE', { address: payer, payment, resources: { vcpus: 1, memory: 128 } }, undefined, payer).item_hash;
    const hold = instance({ type: 'hold', chain: 'ETH' });
    const credit = instance({ type: 'credit', chain: 'ETH' });
    const stream = instance({ type: 'superfluid', chain: 'BASE', receiver: '0x00000000000000000000000000000000000000bb' });
    api.prices.set(hold, { cost: '1000', payment_type: 'hold' });
    api.prices.set(credit, { cost: '0.5', payment_type: 'credit' });
    api.balances.set(payer, { balance: '999.5', credit_balance: 1000 });
    const poor = await notify(hold);
    assert.equal(poor.status, 402);
    assert.match(poor.body, /^Insufficient balance/);
    const noCredits = await notify(credit);
    assert.equal(noCredits.status, 402, 'an hour costs 1800 credits');
    assert.match(noCredits.body, /^Insufficient credits/);
    const streamed = await notify(stream);
    assert.equal(streamed.status, 400);
    assert.equal(streamed.body, 'Invalid payment method');
    // Paid: the payment passes; this program source cannot run instances yet, so the reference's failing answer.
    api.balances.set(payer, { balance: '1000.0', credit_balance: 1800 });
    for (const h of [hold, credit]) {
      const paid = await notify(h);
      assert.equal(paid.status, 503, paid.body);
      const answer = JSON.parse(paid.body) as { success: boolean; failing: string[]; errors: Record<string, string> };
      assert.equal(answer.success, false);
      assert.deepEqual(answer.failing, [h]);
    }
    assert.deepEqual(node.node.gateway.kept(), []);
    assert.equal(node.node.gateway.list().some((e) => [hold, credit, stream].includes(e.hash)), false);
  });
});

describe('/control/* on a multi-worker node (workers ask the primary over IPC)', { skip }, () => {
  let api: FakeAlephApi;
  let node: TestNode;

  before(async () => {
    api = new FakeAlephApi();
    await api.start();
  });
  after(async () => {
    await node?.close();
    await api?.close();
  });

  it('allocates, serves the owner logs over HTTP and WebSocket, and refuses a replay across workers', async () => {
    const owner = (await sign({ job: 'address', key: OWNER_KEY })).address;
    const scheduler = (await sign({ job: 'address', key: SCHEDULER_KEY })).address;
    const hash = api.addProgram({ code: api.addStore(talkerZip()), runtime: api.addStore(Buffer.from('runtime')), sender: owner });
    node = await startAlephNode({ api: api.url, workers: 2, extra: `[control]\nauthorized_allocation_signers = ["${scheduler}"]` });
    const body = JSON.stringify({ persistent_vms: [hash], instances: [] });
    const authorization = (await sign({ job: 'allocation', key: SCHEDULER_KEY, method: 'POST', path: '/control/allocations', body, iat: Math.floor(Date.now() / 1000) })).authorization as string;
    const post = () => request(node, { host: node.domain, path: '/control/allocations', method: 'POST', headers: { authorization }, body });
    const first = await post();
    assert.equal(first.status, 200, first.body);
    // Each request is a new connection, so the kernel may hand it to either worker: the replay check is the primary's.
    for (let i = 0; i < 4; i++) assert.equal((await post()).status, 401);
    await until(() => node.node.gateway.list().some((e) => e.hash === hash && e.state === 'ready'), 20_000, 'running');
    await until(() => node.node.gateway.logs(hash).some((e) => e.line === 'talker started'), 10_000, 'the start line');

    const logsPath = `/control/machine/${hash}/logs`;
    const signed = await sign({ job: 'operator', wallet: { chain: 'ETH', key: OWNER_KEY }, domain: node.domain, method: 'GET', path: logsPath, time: new Date().toISOString(), expires: new Date(Date.now() + 3600_000).toISOString() });
    const logs = await request(node, { host: node.domain, path: logsPath, headers: signed.headers });
    assert.equal(logs.status, 200, logs.body);
    assert.ok((JSON.parse(logs.body) as Array<{ MESSAGE: string }>).some((e) => e.MESSAGE === 'talker started'));

    const streamPath = `/control/machine/${hash}/stream_logs`;
    const auth = (await sign({ job: 'operator', wallet: { chain: 'ETH', key: OWNER_KEY }, domain: node.domain, method: 'GET', path: streamPath, time: new Date().toISOString(), expires: new Date(Date.now() + 3600_000).toISOString() })).auth;
    const ws = new WebSocket(`wss://127.0.0.1:${node.httpsPort}${streamPath}`, { ca: node.ca, servername: node.domain, headers: { host: node.domain } } as WebSocket.ClientOptions);
    const got: Array<Record<string, string>> = [];
    ws.on('message', (data) => got.push(JSON.parse(data.toString()) as Record<string, string>));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ auth }));
    await until(() => got.some((m) => m.status === 'connected'), 10_000, 'connected');
    assert.equal((await request(node, { host: node.domain, path: `/vm/${hash}/from-a-worker` })).status, 200);
    await until(() => got.some((m) => m.message === 'request /from-a-worker'), 10_000, 'the live line');
    ws.close();
  });
});
