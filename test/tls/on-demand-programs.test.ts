// Issue 14 case 4: on-demand certificates only for programs that exist. A base32
// label is well-formed for any 32 bytes; the policy asks the program source whether
// that hash is a program (local registry, or a PROGRAM message on the Aleph network),
// so random labels order nothing, drain no rate-limit token, and a real program's new
// host still gets its certificate at its first handshake.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hashToLabel } from '../../src/common/hash.js';
import { programHash, startTestNode } from '../helpers/node.js';
import { fixtureProgram } from '../helpers/paths.js';
import { FakeAlephApi, programZip } from '../fixtures/aleph-api/server.js';
import { startAlephNode } from '../programs/helpers.js';
import { DOMAIN, HELLO_HASH, handshake, startAcmeNode, usePebble } from './acme-harness.js';

function randomLabels(count: number, domain: string): string[] {
  return Array.from({ length: count }, () => `${hashToLabel(randomBytes(32).toString('hex'))}.${domain}`);
}

/** Handshakes a few at a time (a flood, but within what the test machine's cores take). */
async function handshakeAll(port: number, hosts: string[], ca: string): Promise<number> {
  let ok = 0;
  for (let i = 0; i < hosts.length; i += 20) {
    const results = await Promise.all(hosts.slice(i, i + 20).map((host) => handshake(port, host, ca)));
    ok += results.filter((r) => r.ok).length;
  }
  return ok;
}

describe('acme: on-demand certificates only for programs that exist (Pebble)', () => {
  let env: Parameters<Parameters<typeof usePebble>[2]>[0];
  usePebble('aleph-edge-on-demand-', {}, (e) => (env = e));

  it('200 random well-formed labels cause 0 orders; a real program\'s new host gets its certificate at its first handshake right after', async () => {
    const { pebble, root, work } = env;
    const n = await startAcmeNode({ pebble, dir: work.dir, storage: path.join(work.dir, 'labels'), tls: ['issue_rate = { burst = 3, interval = "1h" }'] });
    try {
      // The node's own domain's certificate (also the default for clients without SNI): one token.
      assert.equal((await handshake(n.httpsPort, DOMAIN, root)).ok, true);
      const before = pebble.orders();
      const served = await handshakeAll(n.httpsPort, randomLabels(200, DOMAIN), root);
      assert.equal(served, 0);
      assert.equal(pebble.orders() - before, 0, 'orders for labels of programs that do not exist');
      assert.equal(n.node.metrics.value('aleph_edge_cert_policy_denials_total'), 200);
      assert.equal(n.node.metrics.value('aleph_edge_cert_rate_limited_total'), 0);

      const real = `${hashToLabel(HELLO_HASH)}.${DOMAIN}`;
      const first = await handshake(n.httpsPort, real, root);
      assert.equal(first.ok, true, first.ok ? '' : first.error.message);
      assert.equal(pebble.orders() - before, 1);
      process.stdout.write(`# on-demand: 200 random labels -> ${pebble.orders() - before - 1} orders; ${real.slice(0, 12)}… served at its first handshake\n`);
    } finally {
      await n.close();
    }
  });
});

describe('internal CA: the same policy and rate limit', () => {
  it('mints nothing for random labels or a route to a hash with no program, and mints for real programs', async () => {
    const node = await startTestNode({
      programs: [{ name: 'sockets', script: fixtureProgram('sockets.js') }],
      extra: [
        '[[routes]]', 'host = "a.example.test"', `program = "${programHash('sockets')}"`,
        '[[routes]]', 'host = "b.example.test"', `program = "${programHash('sockets')}"`,
        '[[routes]]', 'host = "c.example.test"', `program = "${programHash('sockets')}"`,
        '[[routes]]', 'host = "nothing.example.test"', `program = "${'ab'.repeat(32)}"`,
      ].join('\n'),
    });
    try {
      // The node's own domain (also the default for clients without SNI) takes the first token.
      assert.equal((await handshake(node.httpsPort, node.domain, node.ca)).ok, true);
      assert.equal(await handshakeAll(node.httpsPort, randomLabels(50, node.domain), node.ca), 0);
      // A static route to a hash with no program is refused too.
      assert.equal((await handshake(node.httpsPort, 'nothing.example.test', node.ca)).ok, false);
      assert.equal(node.node.metrics.value('aleph_edge_cert_policy_denials_total'), 51);
      assert.equal(node.node.metrics.value('aleph_edge_certs_issued_total', { issuer: 'internal' }), 1, 'only the domain\'s certificate was minted');

      const real = `${hashToLabel(programHash('sockets'))}.${node.domain}`;
      assert.equal((await handshake(node.httpsPort, real, node.ca)).ok, true);
      // With the domain and the label, three routed hosts use up the default burst of 5.
      for (const host of ['a.example.test', 'b.example.test', 'c.example.test']) assert.equal((await handshake(node.httpsPort, host, node.ca)).ok, true, host);
      assert.equal((await handshake(node.httpsPort, 'c.example.test', node.ca)).ok, true, 'a minted certificate is served again without a token');
      assert.equal(node.node.metrics.value('aleph_edge_certs_issued_total', { issuer: 'internal' }), 5);
    } finally {
      await node.close();
    }
  });

  it('stops minting at issue_rate', async () => {
    const hosts = ['a.rate.test', 'b.rate.test', 'c.rate.test'];
    const node = await startTestNode({
      programs: [{ name: 'sockets', script: fixtureProgram('sockets.js') }],
      extra: hosts.flatMap((host) => ['[[routes]]', `host = "${host}"`, `program = "${programHash('sockets')}"`]).join('\n'),
      tls: ['issue_rate = { burst = 3, interval = "1h" }'],
    });
    try {
      // The node's own domain takes the first token.
      assert.equal((await handshake(node.httpsPort, node.domain, node.ca)).ok, true);
      const results = [];
      for (const host of hosts) results.push((await handshake(node.httpsPort, host, node.ca)).ok);
      assert.deepEqual(results, [true, true, false]);
      assert.equal(node.node.metrics.value('aleph_edge_cert_rate_limited_total'), 1);
    } finally {
      await node.close();
    }
  });
});

describe('programs.source = "aleph": the policy asks whether the hash is a PROGRAM message', () => {
  let api: FakeAlephApi;
  before(async () => {
    api = new FakeAlephApi();
    await api.start();
  });
  after(async () => {
    await api.close();
  });

  it('one API query per unknown hash (single flight, negative answers cached), and no download for a certificate', async () => {
    const runtime = api.addStore(Buffer.from('runtime'));
    const code = api.addStore(programZip('v1'));
    const program = api.addProgram({ code, runtime });
    const node = await startAlephNode({ api: api.url });
    try {
      const unknown = `${hashToLabel(randomBytes(32).toString('hex'))}.${node.domain}`;
      const start = { ...api.counts };
      const results = await Promise.all(Array.from({ length: 10 }, () => handshake(node.httpsPort, unknown, node.ca)));
      assert.equal(results.filter((r) => r.ok).length, 0);
      assert.equal((await handshake(node.httpsPort, unknown, node.ca)).ok, false);
      assert.equal(api.counts.messages - start.messages, 1, 'API queries for one unknown hash');
      // A STORE message is not a program.
      assert.equal((await handshake(node.httpsPort, `${hashToLabel(code)}.${node.domain}`, node.ca)).ok, false);

      const real = await handshake(node.httpsPort, `${hashToLabel(program)}.${node.domain}`, node.ca);
      assert.equal(real.ok, true, real.ok ? '' : real.error.message);
      assert.equal(api.counts.raw - start.raw, 0, 'downloads for a certificate');
    } finally {
      await node.close();
    }
  });
});
