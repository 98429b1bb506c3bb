import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import http2 from 'node:http2';
import tls from 'node:tls';
import { hashToLabel } from '../../src/common/index.js';
import { StatusClient } from '../../src/status/index.js';
import { example, fixtureProgram } from '../helpers/paths.js';
import { alive, programHash, request, startTestNode, until, type TestNode } from '../helpers/node.js';
import { promtoolCheck } from '../helpers/promtool.js';

describe('multi-core: worker processes serve, the primary orchestrates', () => {
  let node: TestNode;
  let startsFile: string;
  const counter = programHash('counter');
  const sockets = programHash('sockets');

  before(async () => {
    startsFile = `${process.env.TMPDIR ?? '/tmp'}/aleph-edge-workers-starts-${process.pid}`;
    node = await startTestNode({
      workers: 2,
      programs: [
        { name: 'counter', script: example('counter') },
        { name: 'sockets', script: fixtureProgram('sockets.js'), env: { STARTS_FILE: startsFile, START_DELAY_MS: '300' } },
      ],
    });
  });
  after(() => node.close());

  it('runs two workers and reports them', async () => {
    const status = await new StatusClient(node.socket).status();
    assert.equal(status.workers?.length, 2);
    for (const worker of status.workers!) assert.ok(worker.pid && alive(worker.pid));
    // As the workers bound them, sent to the primary as data.
    assert.deepEqual(status.listeners, [
      { protocol: 'https', address: '127.0.0.1', port: node.httpsPort },
      { protocol: 'http', address: '127.0.0.1', port: node.httpPort },
    ]);
  });

  it('routes by path and by label through the workers, to one execution', async () => {
    const replies: string[] = [];
    for (let i = 0; i < 6; i++) {
      const host = i % 2 ? node.domain : `${hashToLabel(counter)}.${node.domain}`;
      const path = i % 2 ? `/vm/${counter}/state/increment` : '/state/increment';
      const reply = await request(node, { host, path });
      assert.equal(reply.status, 200);
      replies.push(reply.body.trim());
    }
    assert.deepEqual(replies, ['1', '2', '3', '4', '5', '6']);
    // Workers share leases among concurrent requests; the counts still add up.
    await until(async () => (await new StatusClient(node.socket).vms()).find((v) => v.hash === counter)?.in_flight === 0, 3000, 'leases back');
    const vm = (await new StatusClient(node.socket).vms()).find((v) => v.hash === counter);
    assert.equal(vm?.requests, 6);
  });

  it('counts every request of a concurrent burst, and a stopped program boots fresh on the next request', async () => {
    const burst = await Promise.all(Array.from({ length: 30 }, () => request(node, { host: node.domain, path: `/vm/${counter}/state/increment` })));
    assert.ok(burst.every((r) => r.status === 200));
    const client = new StatusClient(node.socket);
    await until(async () => (await client.vms()).find((v) => v.hash === counter)?.in_flight === 0, 3000, 'leases back');
    assert.equal((await client.vms()).find((v) => v.hash === counter)?.requests, 36);
    await client.stopVm(counter);
    const after = await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` });
    assert.equal(after.body.trim(), '1');
  });

  it('boots once for 40 concurrent cold requests spread over the workers', async () => {
    const replies = await Promise.all(Array.from({ length: 40 }, () => request(node, { host: node.domain, path: `/vm/${sockets}/` })));
    assert.ok(replies.every((r) => r.status === 200));
    assert.equal(new Set(replies.map((r) => r.body)).size, 1);
    const starts = (await readFile(startsFile, 'utf8')).trim().split('\n');
    assert.equal(starts.length, 1);
    const metrics = await new StatusClient(node.socket).metrics();
    const perWorker = [...metrics.matchAll(/aleph_edge_requests_total\{worker="(\d)",class="2xx"\} (\d+)/g)];
    assert.equal(perWorker.length, 2, 'both workers served requests');
  });

  it('resumes TLS sessions across workers (shared ticket keys)', async () => {
    const connect = (session?: Buffer) => new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, session, maxVersion: 'TLSv1.2' });
      socket.once('secureConnect', () => resolve(socket));
      socket.once('error', reject);
    });
    const first = await connect();
    const session = await new Promise<Buffer>((resolve) => {
      const existing = first.getSession();
      if (existing) resolve(existing);
      else first.once('session', resolve);
    });
    first.end();
    let resumed = 0;
    for (let i = 0; i < 8; i++) {
      const socket = await connect(session);
      if (socket.isSessionReused()) resumed++;
      socket.end();
    }
    // The kernel spreads connections over both workers; all of them must resume.
    assert.equal(resumed, 8);
  });

  it('HTTP/2 through the workers: requests served, TLS 1.3 sessions resumed across workers with h2', async () => {
    const connect = (session?: Buffer) => new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, session, ALPNProtocols: ['h2'] });
      socket.once('secureConnect', () => resolve(socket));
      socket.once('error', reject);
    });
    const first = await connect();
    const session = await new Promise<Buffer>((resolve) => first.once('session', resolve));
    first.destroy();
    let resumed = 0;
    for (let i = 0; i < 8; i++) {
      const socket = await connect(session);
      assert.equal(socket.alpnProtocol, 'h2');
      if (socket.isSessionReused()) resumed++;
      socket.destroy();
    }
    assert.equal(resumed, 8);
    // Requests over h2 sessions opened on whichever worker accepted them.
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const client = http2.connect(`https://127.0.0.1:${node.httpsPort}`, { ca: node.ca, servername: node.domain });
      const status = await new Promise<number>((resolve, reject) => {
        const stream = client.request({ ':path': `/vm/${counter}/state/increment`, ':authority': node.domain });
        stream.on('response', (h) => resolve(Number(h[':status'])));
        stream.on('error', reject);
        stream.resume();
      });
      statuses.push(status);
      client.destroy();
    }
    assert.deepEqual(statuses, [200, 200, 200, 200]);
  });

  it('reload reaches every worker', async () => {
    const original = await readFile(node.configFile, 'utf8');
    await writeFile(node.configFile, original + `\n[[routes]]\nhost = "app.example.com"\nprogram = "${counter}"\n`);
    assert.equal((await new StatusClient(node.socket).reload()).ok, true);
    for (let i = 0; i < 6; i++) {
      assert.equal((await request(node, { host: 'app.example.com', path: '/state/increment' })).status, 200);
    }
  });

  it('serves /metrics that Prometheus\'s own parser accepts: families of the primary and the workers merged', async () => {
    // Families such as aleph_edge_txt_lookups_total are registered by the primary and by every worker.
    assert.equal((await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` })).status, 200);
    const metrics = await new StatusClient(node.socket).metrics();
    assert.match(metrics, /^aleph_edge_requests_total\{worker="\d+",/m, 'worker samples');
    assert.match(metrics, /^aleph_edge_boots_total/m, 'primary samples');
    const check = await promtoolCheck(metrics);
    assert.equal(check.code, 0, `promtool check metrics: ${check.output}`);
    assert.equal(check.output.trim(), '', 'no lint findings');
  });

  it('status counters are the workers\' counters, read as data and summed', async () => {
    const status = new StatusClient(node.socket);
    const before = (await status.status()).counters.requests!;
    for (let i = 0; i < 6; i++) assert.equal((await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` })).status, 200);
    // Counted when each exchange closes, which may follow the reply by a moment.
    await until(async () => (await status.status()).counters.requests! - before >= 6, 60_000, 'six more requests counted');
    assert.equal((await status.status()).counters.requests! - before, 6);
  });

  it('drain stops the workers and the programs', async () => {
    const status = await new StatusClient(node.socket).status();
    const pids = [...status.workers!.map((w) => w.pid!), ...status.vms.map((v) => v.pid!)];
    await node.close();
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} still alive`);
  });
});

describe('multi-core: a worker keeps a lease briefly after its last request', () => {
  let node: TestNode;
  const counter = programHash('counter');

  before(async () => {
    // idle_timeout 5s: workers linger 500 ms on a lease after its last request.
    node = await startTestNode({ workers: 2, programs: [{ name: 'counter', script: example('counter') }], orchestrator: ['idle_timeout = "5s"'] });
  });
  after(() => node.close());

  const roundTrips = async () => {
    const metrics = await new StatusClient(node.socket).metrics();
    return [...metrics.matchAll(/aleph_edge_lease_round_trips_total\{worker="\d"\} (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
  };

  it('serves requests a few ms apart without asking the primary each time, and counts every one', async () => {
    await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` }); // boot
    const before = await roundTrips();
    for (let i = 0; i < 12; i++) {
      assert.equal((await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` })).status, 200);
      await new Promise((r) => setTimeout(r, 20));
    }
    // At most one lease per worker (the kernel spreads connections over both).
    assert.ok((await roundTrips()) - before <= 2, `${(await roundTrips()) - before} round trips for 12 requests`);
    const client = new StatusClient(node.socket);
    await until(async () => (await client.vms()).find((v) => v.hash === counter)?.in_flight === 0, 2000, 'leases back after the linger');
    assert.equal((await client.vms()).find((v) => v.hash === counter)?.requests, 13);
  });

  it('counts the idle timeout from the last request, not from the end of the linger', async () => {
    const client = new StatusClient(node.socket);
    await request(node, { host: node.domain, path: `/vm/${counter}/state/increment` });
    const last = Date.now();
    await until(async () => !(await client.vms()).some((v) => v.hash === counter && v.state === 'ready'), 9000, 'idle stop');
    const stoppedAfter = Date.now() - last;
    assert.ok(stoppedAfter >= 4900, `stopped ${stoppedAfter} ms after the last request`);
    assert.ok(stoppedAfter < 5400, `stopped ${stoppedAfter} ms after the last request (the 500 ms linger is not added)`);
  });
});
