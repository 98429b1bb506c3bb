// tls.mode = "acme" end to end against a real Pebble: issuance on the first request
// (both challenge types, each alone, fallback), single flight, abuse resistance,
// restart, a half-written certificate, and two nodes sharing one storage folder.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { issuerNameFor } from '../../src/tls/acme-account.js';
import { handshake, httpsGet, startAcmeNode, usePebble, type AcmeNode, type AcmeNodeOptions, type Pebble, type TempDir } from './acme-harness.js';

describe('acme mode against Pebble', () => {
  let pebble: Pebble;
  let root: string;
  let work: TempDir;
  usePebble('aleph-edge-acme-', {}, (env) => ({ pebble, root, work } = env));

  async function withNode<T>(name: string, options: Partial<AcmeNodeOptions>, fn: (n: AcmeNode, storage: string) => Promise<T>): Promise<T> {
    const storage = options.storage ?? path.join(work.dir, `${name}-certs`);
    const node = await startAcmeNode({ pebble, dir: work.dir, storage, ...options });
    try {
      return await fn(node, storage);
    } finally {
      await node.close();
    }
  }

  const succeeded = (n: AcmeNode, challenge: string) => n.node.metrics.value('aleph_edge_acme_orders_succeeded_total', { challenge });

  it('first HTTPS request to a new program host gets a Pebble-issued chain (tls-alpn-01 first)', async () => {
    await withNode('first', { hosts: ['app.first.test'] }, async (n) => {
      const before = pebble.orders();
      const reply = await httpsGet(n.httpsPort, 'app.first.test', root);
      assert.equal(reply.status, 200);
      assert.match(reply.body, /hello app\.first\.test/);
      assert.match(reply.cert.subjectaltname ?? '', /DNS:app\.first\.test/);
      assert.match(String(reply.cert.issuer.CN), /Pebble Intermediate/);
      assert.equal(pebble.orders() - before, 1);
      assert.equal(succeeded(n, 'tls-alpn-01'), 1);
    });
  });

  it('HTTP-01 only', async () => {
    await withNode('http01', { hosts: ['app.http01.test'], challenges: ['http-01'] }, async (n) => {
      const reply = await httpsGet(n.httpsPort, 'app.http01.test', root);
      assert.equal(reply.status, 200);
      assert.equal(succeeded(n, 'http-01'), 1);
      assert.equal(succeeded(n, 'tls-alpn-01'), 0);
    });
  });

  it('TLS-ALPN-01 only (no :80 listener at all)', async () => {
    await withNode('alpn', { hosts: ['app.alpn.test'], challenges: ['tls-alpn-01'], noHttp: true }, async (n) => {
      const reply = await httpsGet(n.httpsPort, 'app.alpn.test', root);
      assert.equal(reply.status, 200);
      assert.equal(succeeded(n, 'tls-alpn-01'), 1);
      // A normal client offering acme-tls/1 by mistake never gets a validation certificate.
      const stray = await handshake(n.httpsPort, 'app.alpn.test', root, ['acme-tls/1']);
      assert.equal(stray.ok, false);
    });
  });

  it('worker processes answer TLS-ALPN-01 and HTTP-01 through the primary', async () => {
    await withNode('workers-alpn', { hosts: ['app.walpn.test'], challenges: ['tls-alpn-01'], noHttp: true, workers: 2 }, async (n) => {
      const reply = await httpsGet(n.httpsPort, 'app.walpn.test', root);
      assert.equal(reply.status, 200);
      assert.equal(succeeded(n, 'tls-alpn-01'), 1);
    });
    await withNode('workers-http', { hosts: ['app.whttp.test'], challenges: ['http-01'], workers: 2 }, async (n) => {
      const reply = await httpsGet(n.httpsPort, 'app.whttp.test', root);
      assert.equal(reply.status, 200);
      assert.equal(succeeded(n, 'http-01'), 1);
    });
  });

  it('falls back to the next challenge type when one fails', async () => {
    await withNode('fallback', { hosts: ['app.fallback.test'], challenges: ['http-01', 'tls-alpn-01'], noHttp: true }, async (n) => {
      const before = pebble.orders();
      const reply = await httpsGet(n.httpsPort, 'app.fallback.test', root);
      assert.equal(reply.status, 200);
      assert.equal(n.node.metrics.value('aleph_edge_acme_orders_failed_total', { challenge: 'http-01' }), 1);
      assert.equal(succeeded(n, 'tls-alpn-01'), 1);
      assert.equal(pebble.orders() - before, 2);
    });
  });

  it('50 concurrent handshakes for one new host place exactly one order', async () => {
    await withNode('flight', { hosts: ['app.flight.test'] }, async (n) => {
      const before = pebble.orders();
      const results = await Promise.all(Array.from({ length: 50 }, () => handshake(n.httpsPort, 'app.flight.test', root)));
      assert.deepEqual(results.filter((r) => !r.ok).map((r) => !r.ok && r.error.message), []);
      assert.equal(pebble.orders() - before, 1);
      const fingerprints = new Set(results.map((r) => r.ok && r.cert.fingerprint256));
      assert.equal(fingerprints.size, 1);
    });
  });

  it('500 handshakes for random hosts that route nowhere place no order and keep memory bounded', async () => {
    await withNode('abuse', { hosts: ['app.abuse.test'] }, async (n, storage) => {
      const before = pebble.orders();
      global.gc?.();
      const heapBefore = process.memoryUsage().heapUsed;
      for (let batch = 0; batch < 10; batch++) {
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
          handshake(n.httpsPort, `r${batch}x${i}${Math.random().toString(36).slice(2, 10)}.nowhere.test`, root)));
        assert.ok(results.every((r) => !r.ok), 'no certificate for hosts that route nowhere');
      }
      // The node keeps serving a real host meanwhile.
      assert.equal((await httpsGet(n.httpsPort, 'app.abuse.test', root)).status, 200);
      assert.equal(pebble.orders() - before, 1, 'only the real host was ordered');
      assert.equal(n.node.metrics.value('aleph_edge_cert_policy_denials_total'), 500);
      const growth = process.memoryUsage().heapUsed - heapBefore;
      assert.ok(growth < 64 * 1024 * 1024, `heap grew ${growth} bytes`);
      const stored = (await readdir(path.join(storage, issuerNameFor(pebble.directory)))).filter((name) => !name.startsWith('_'));
      assert.deepEqual(stored, ['app.abuse.test']);
    });
  });

  it('a restart serves stored certificates without a new order; a half-written one is never served', async () => {
    const storage = path.join(work.dir, 'restart-certs');
    const hosts = ['app.restart.test', 'app.crash.test'];
    let fingerprint = '';
    await withNode('restart', { storage, hosts }, async (n) => {
      for (const host of hosts) assert.equal((await httpsGet(n.httpsPort, host, root)).status, 200);
      const served = await handshake(n.httpsPort, 'app.restart.test', root);
      assert.ok(served.ok);
      fingerprint = served.cert.fingerprint256;
    });
    // Crash in the middle of replacing app.crash.test: the new key is in place, the
    // new certificate only in its temp file (never renamed), so the pair no longer matches.
    const hostDir = path.join(storage, issuerNameFor(pebble.directory), 'app.crash.test');
    const newKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await writeFile(path.join(hostDir, 'key.pem'), newKey);
    const certPem = await readFile(path.join(hostDir, 'cert.pem'), 'utf8');
    await writeFile(path.join(hostDir, `.cert.pem.${process.pid}.abcdef.tmp`), certPem.slice(0, certPem.length / 2));
    const before = pebble.orders();
    await withNode('restart', { storage, hosts }, async (n) => {
      const again = await handshake(n.httpsPort, 'app.restart.test', root);
      assert.ok(again.ok);
      assert.equal(again.cert.fingerprint256, fingerprint);
      assert.equal(pebble.orders() - before, 0, 'stored certificate reused');
      // The broken pair is refused; a fresh certificate is ordered and verifies.
      const crashed = await handshake(n.httpsPort, 'app.crash.test', root);
      assert.ok(crashed.ok, crashed.ok ? '' : crashed.error.message);
      assert.equal(pebble.orders() - before, 1);
      assert.ok((await readdir(hostDir)).every((name) => !name.endsWith('.tmp') || name.includes('abcdef')));
    });
  });

  it('two nodes sharing one storage folder issue a host once', async () => {
    const storage = path.join(work.dir, 'shared-certs');
    const hosts = ['app.shared.test'];
    const a = await startAcmeNode({ pebble, dir: work.dir, storage, hosts, challenges: ['http-01'], validationPorts: false });
    const b = await startAcmeNode({ pebble, dir: work.dir, storage, hosts, challenges: ['http-01'], validationPorts: false });
    // A load balancer in front of both: Pebble's HTTP-01 request goes to whichever node has the token.
    const fanout = http.createServer(async (req, res) => {
      for (const port of [a.httpPort, b.httpPort]) {
        const answer = await fetch(`http://127.0.0.1:${port}${req.url}`).catch(() => undefined);
        if (answer?.status === 200) return res.end(await answer.text());
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => fanout.listen(pebble.httpPort, '127.0.0.1', resolve));
    try {
      const before = pebble.orders();
      const results = await Promise.all([a, b, a, b].map((n) => handshake(n.httpsPort, 'app.shared.test', root)));
      assert.ok(results.every((r) => r.ok), JSON.stringify(results.map((r) => !r.ok && r.error.message)));
      assert.equal(pebble.orders() - before, 1);
      assert.equal(new Set(results.map((r) => r.ok && r.cert.fingerprint256)).size, 1);
    } finally {
      fanout.close();
      await Promise.all([a.close(), b.close()]);
    }
  });
});
