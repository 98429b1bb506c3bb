// Custom domains by `_aleph-id.<host>` TXT records, against a real DNS server:
// Debian's pebble-challtestsrv (TXT records set through its management API), or the
// suite's own UDP DNS server when challtestsrv is not installed. The same decision
// routes requests and lets the on-demand TLS policy mint a certificate.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { programHash, request, startTestNode, type TestNode } from '../helpers/node.js';
import { example } from '../helpers/paths.js';
import { TestDnsServer } from '../routing/dns-server.js';
import { StatusClient } from '../../src/status/index.js';

interface Dns {
  address: string; // ip:port for routing.dns_servers
  setTxt(host: string, value: string): Promise<void>;
  clearTxt(host: string): Promise<void>;
  close(): Promise<void>;
}

async function freePort(kind: 'tcp' | 'udp'): Promise<number> {
  if (kind === 'udp') {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const { port } = socket.address();
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    return port;
  }
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function challtestsrv(): Promise<Dns> {
  const dnsPort = await freePort('udp');
  const managementPort = await freePort('tcp');
  const child: ChildProcess = spawn('pebble-challtestsrv', [
    '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '',
    '-management', `127.0.0.1:${managementPort}`,
  ], { stdio: 'ignore' });
  const management = `http://127.0.0.1:${managementPort}`;
  const post = async (path: string, body: unknown) => {
    const response = await fetch(management + path, { method: 'POST', body: JSON.stringify(body) });
    assert.equal(response.status, 200, `challtestsrv ${path}`);
  };
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      await post('/clear-txt', { host: '_aleph-id.warmup.test.' });
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    address: `127.0.0.1:${dnsPort}`,
    setTxt: (host, value) => post('/set-txt', { host: `_aleph-id.${host}.`, value }),
    clearTxt: (host) => post('/clear-txt', { host: `_aleph-id.${host}.` }),
    close: async () => {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    },
  };
}

async function ownDns(): Promise<Dns> {
  const server = new TestDnsServer();
  const address = await server.start();
  return {
    address,
    setTxt: async (host, value) => server.setTxt(`_aleph-id.${host}`, [[value]], 1),
    clearTxt: async (host) => void server.zone.delete(`_aleph-id.${host}`),
    close: () => server.close(),
  };
}

const hasChalltestsrv = ['/usr/bin/pebble-challtestsrv', '/usr/local/bin/pebble-challtestsrv'].some((p) => existsSync(p));

describe(`custom domains by _aleph-id TXT records (${hasChalltestsrv ? 'pebble-challtestsrv' : 'test DNS server'})`, () => {
  let dns: Dns;
  let node: TestNode;
  const hash = programHash('counter');

  before(async () => {
    dns = hasChalltestsrv ? await challtestsrv() : await ownDns();
    node = await startTestNode({
      programs: [{ name: 'counter', script: example('counter') }],
      extra: ['[routing]', `dns_servers = ["${dns.address}"]`, 'max_ttl = "3s"', 'negative_ttl = "3s"'].join('\n'),
    });
  });
  after(async () => {
    await node?.close();
    await dns?.close();
  });

  it('TXT present: routed to the program, and the host gets a certificate at its first handshake', async () => {
    await dns.setTxt('app.test', hash);
    // request() verifies the certificate for SNI app.test against the node's CA.
    const reply = await request(node, { host: 'app.test', path: '/' });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['aleph-program-itemhash'], hash);
  });

  it('TXT absent: no certificate, and 404 with the reason', async () => {
    await assert.rejects(request(node, { host: 'nothing.test', path: '/' }), /alert|socket|ECONNRESET|disconnected/i);
    // Through a name that has a certificate, the same host is a 404.
    const reply = await request(node, { host: 'nothing.test', servername: node.domain, path: '/' });
    assert.equal(reply.status, 404);
    assert.match(reply.body, /no program for host nothing\.test/);
    const hosts = (await new StatusClient(node.socket).certs()).map((c) => c.host);
    assert.ok(hosts.includes('app.test'), `app.test has a certificate (${hosts.join(', ')})`);
    assert.ok(!hosts.includes('nothing.test'), 'nothing.test has none');
  });

  it('answers are cached for their TTL (positive and negative), then looked up again', async () => {
    const TTL_MS = 3_000;
    const status = async (host: string) => (await request(node, { host, servername: node.domain, path: '/' })).status;
    // The TTLs run on the node's real clock: a stalled machine could let one expire between
    // two requests meant to fall inside it. So an attempt counts only when the second request
    // ended within the TTL of the first one's start; otherwise it is tried again on a fresh name.
    const withinTtl = async (change: (host: string) => Promise<void>, before: number) => {
      for (let attempt = 0; attempt < 5; attempt++) {
        const host = `ttl${before}-${attempt}.test`;
        if (before === 200) await dns.setTxt(host, hash);
        const started = Date.now();
        assert.equal(await status(host), before);
        await change(host);
        const cached = await status(host);
        if (Date.now() - started < TTL_MS) {
          assert.equal(cached, before, `${host}: the cached answer still holds within the TTL`);
          return host;
        }
      }
      throw new Error('five attempts each took longer than the TTL: the machine is too loaded to observe a cache hit');
    };
    const eventually = async (host: string, expected: number) => {
      const deadline = Date.now() + 30_000;
      let seen = await status(host);
      while (seen !== expected && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        seen = await status(host);
      }
      assert.equal(seen, expected, `${host}: ${expected} once the TTL has passed`);
    };
    // Positive: the record is removed; the cached answer routes, then its absence is seen.
    await eventually(await withinTtl((host) => dns.clearTxt(host), 200), 404);
    // Negative: a record added after a miss shows only once the negative answer expires.
    await eventually(await withinTtl((host) => dns.setTxt(host, hash), 404), 200);
  });
});
