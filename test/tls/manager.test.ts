import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MetricsRegistry } from '../../src/metrics/registry.js';
import { createCertificateManager } from '../../src/tls/index.js';
import { InternalCa } from '../../src/tls/internal-ca.js';
import type { Issuer } from '../../src/tls/issuer.js';
import type { IssuancePolicy } from '../../src/tls/types.js';
import { IssuingManager } from '../../src/tls/manager.js';
import { CertStorage } from '../../src/tls/storage.js';
import { closeAllServers, handshake, listFiles, policy, spyIssuer, startTlsServer, tempDir, tlsSettings, type TestServer } from './helpers.js';

const DAY = 24 * 3600_000;

interface Setup {
  storage: string;
  caPem: string;
  ca: InternalCa;
  issuer: Issuer & { calls: string[] };
  policy: IssuancePolicy & { asked: string[] };
  metrics: MetricsRegistry;
  manager: IssuingManager;
  server: TestServer;
  close(): Promise<void>;
}

describe('certificate manager (internal mode, real handshakes)', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let count = 0;
  before(async () => ({ dir, cleanup } = await tempDir()));
  after(async () => {
    await closeAllServers();
    await cleanup();
  });

  /** A manager on a storage folder with an issuer spy that delegates to the real CA. */
  async function setup(options: { storage?: string; allow?: (host: string) => boolean } = {}): Promise<Setup> {
    const storage = options.storage ?? path.join(dir, `s${count++}`);
    const ca = await InternalCa.open(storage);
    const issuer = spyIssuer(ca);
    const metrics = new MetricsRegistry();
    const asked = policy(options.allow);
    const manager = await createCertificateManager(tlsSettings({ storage }), { policy: asked, metrics, issuer });
    assert.ok(manager instanceof IssuingManager, 'internal mode issues');
    const server = await startTlsServer(manager);
    return { storage, caPem: ca.certPem, ca, issuer, policy: asked, metrics, manager, server, close: () => server.close() };
  }

  it('mints on demand, persists, and a second instance serves the stored cert with zero mints', async () => {
    const a = await setup();
    const result = await handshake(a.server.port, 'app.example.org', a.caPem);
    assert.equal(result.authorized, true, result.authorizationError);
    assert.equal(result.subjectaltname, 'DNS:app.example.org');
    assert.equal(result.keyType, 'ec');
    assert.equal(result.curve, 'prime256v1');
    assert.deepEqual(a.issuer.calls, ['app.example.org']);
    assert.equal(a.metrics.value('aleph_edge_certs_issued_total', { issuer: 'internal' }), 1);
    assert.equal(a.metrics.value('aleph_edge_certs_cached'), 1);

    // Cached: no new mint, same certificate; mixed case and a trailing dot normalize to the same host.
    const again = await handshake(a.server.port, 'APP.example.org.', a.caPem);
    assert.equal(again.fingerprint256, result.fingerprint256);
    assert.equal(a.issuer.calls.length, 1);
    await a.close();

    const b = await setup({ storage: a.storage });
    const fromDisk = await handshake(b.server.port, 'app.example.org', b.caPem);
    assert.equal(fromDisk.authorized, true, fromDisk.authorizationError);
    assert.equal(fromDisk.fingerprint256, result.fingerprint256);
    assert.equal(b.issuer.calls.length, 0);
    assert.equal(b.metrics.counter('aleph_edge_certs_issued_total', '').total(), 0);

    const listed = await b.manager.list();
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.host, 'app.example.org');
    assert.equal(listed[0]!.source, 'internal');
    assert.match(listed[0]!.issuer, /^CN=aleph-edge internal CA /);
    assert.ok(Date.parse(listed[0]!.notAfter) > Date.now() + 29 * DAY);
    await b.close();
  });

  it('writes only cert.pem, key.pem (0600) and meta.json in a 0700 host folder', async () => {
    const s = await setup();
    await handshake(s.server.port, 'files.example.org', s.caPem);
    await s.close();
    const hostDir = path.join(s.storage, 'internal', 'files.example.org');
    assert.deepEqual((await readdir(hostDir)).sort(), ['cert.pem', 'key.pem', 'meta.json']);
    assert.equal((await stat(hostDir)).mode & 0o777, 0o700);
    assert.equal((await stat(path.join(hostDir, 'key.pem'))).mode & 0o777, 0o600);
    const meta = JSON.parse(await readFile(path.join(hostDir, 'meta.json'), 'utf8'));
    assert.equal(meta.host, 'files.example.org');
    assert.equal(meta.issuer, 'internal');
    assert.equal(meta.source, 'internal');
    assert.equal(meta.fingerprint256, new X509Certificate(await readFile(path.join(hostDir, 'cert.pem'))).fingerprint256);
    assert.ok(!(await listFiles(s.storage)).some((f) => f.endsWith('.tmp') || f.endsWith('.lock')));
  });

  it('a policy denial yields no certificate and a failed handshake', async () => {
    const s = await setup({ allow: (host) => host !== 'denied.example.org' });
    await assert.rejects(handshake(s.server.port, 'denied.example.org', s.caPem));
    assert.equal(s.issuer.calls.length, 0);
    assert.equal(s.metrics.value('aleph_edge_cert_policy_denials_total'), 1);
    assert.deepEqual(await listFiles(path.join(s.storage, 'internal')), ['ca.crt', 'ca.key']);
    // The node keeps serving allowed hosts.
    const ok = await handshake(s.server.port, 'allowed.example.org', s.caPem);
    assert.equal(ok.authorized, true);
    await s.close();
  });

  it('50 concurrent handshakes for one new host mint exactly once', async () => {
    const s = await setup();
    const results = await Promise.all(Array.from({ length: 50 }, () => handshake(s.server.port, 'burst.example.org', s.caPem)));
    assert.ok(results.every((r) => r.authorized));
    assert.equal(new Set(results.map((r) => r.fingerprint256)).size, 1);
    assert.deepEqual(s.issuer.calls, ['burst.example.org']);
    // One lookup for all of them (not 50 serialized by the lock file): the policy was asked once.
    assert.deepEqual(s.policy.asked, ['burst.example.org']);
    assert.equal(s.metrics.counter('aleph_edge_certs_issued_total', '').get({ issuer: 'internal' }), 1);
    await s.close();
  });

  it('invalid server names fail the handshake cleanly and write nothing', async () => {
    const p = policy();
    const storage = path.join(dir, 'invalid');
    const ca = await InternalCa.open(storage);
    const issuer = spyIssuer(ca);
    const manager = await createCertificateManager(tlsSettings({ storage }), { policy: p, metrics: new MetricsRegistry(), issuer });
    const server = await startTlsServer(manager);
    const names = ['127.0.0.1', '::1', '10.1', 'a..b.example.org', '..', 'x'.repeat(64) + '.example.org', 'a/b.example.org', '*.example.org', '-lead.example.org', 'a_b.example.org', 'ca.crt'];
    for (const name of names) {
      await assert.rejects(handshake(server.port, name, ca.certPem), `handshake for ${JSON.stringify(name)} should fail`);
    }
    assert.deepEqual(server.seen, names); // they did reach the server's SNI callback
    // Names node's client would not send, asked directly.
    for (const name of ['a\0b.example.org', '../../etc', 'x'.repeat(254), '']) {
      assert.equal(await manager.secureContext(name), undefined);
    }
    await server.close();
    assert.equal(issuer.calls.length, 0);
    assert.deepEqual(p.asked, []);
    assert.deepEqual(await listFiles(storage), ['internal/ca.crt', 'internal/ca.key']);
  });

  it('never serves a leftover temp file or a half-written pair: it re-issues instead', async () => {
    const s = await setup();
    // A complete, valid pair that only exists as temp files (crash before rename).
    const stale = await s.ca.issue('temp.example.org');
    const tempHost = path.join(s.storage, 'internal', 'temp.example.org');
    await mkdir(tempHost, { recursive: true });
    await writeFile(path.join(tempHost, '.cert.pem.123.abc.tmp'), stale.certPem);
    await writeFile(path.join(tempHost, '.key.pem.123.abc.tmp'), stale.keyPem);

    // cert.pem present, key.pem missing.
    const noKey = await s.ca.issue('nokey.example.org');
    const noKeyDir = path.join(s.storage, 'internal', 'nokey.example.org');
    await mkdir(noKeyDir, { recursive: true });
    await writeFile(path.join(noKeyDir, 'cert.pem'), noKey.certPem);

    // key.pem truncated.
    const truncated = await s.ca.issue('trunc.example.org');
    const truncDir = path.join(s.storage, 'internal', 'trunc.example.org');
    await mkdir(truncDir, { recursive: true });
    await writeFile(path.join(truncDir, 'cert.pem'), truncated.certPem);
    await writeFile(path.join(truncDir, 'key.pem'), truncated.keyPem.slice(0, 60));

    // cert.pem truncated, key fine.
    const cutCert = await s.ca.issue('cut.example.org');
    const cutDir = path.join(s.storage, 'internal', 'cut.example.org');
    await mkdir(cutDir, { recursive: true });
    await writeFile(path.join(cutDir, 'cert.pem'), cutCert.certPem.slice(0, cutCert.certPem.length / 2));
    await writeFile(path.join(cutDir, 'key.pem'), cutCert.keyPem);

    // cert and key from two different issuances (crash between the two renames).
    const oldPair = await s.ca.issue('mixed.example.org');
    const newPair = await s.ca.issue('mixed.example.org');
    const mixedDir = path.join(s.storage, 'internal', 'mixed.example.org');
    await mkdir(mixedDir, { recursive: true });
    await writeFile(path.join(mixedDir, 'cert.pem'), oldPair.certPem);
    await writeFile(path.join(mixedDir, 'key.pem'), newPair.keyPem);

    const cases = [
      { host: 'temp.example.org', not: stale.certPem },
      { host: 'nokey.example.org', not: noKey.certPem },
      { host: 'trunc.example.org', not: truncated.certPem },
      { host: 'cut.example.org', not: cutCert.certPem },
      { host: 'mixed.example.org', not: oldPair.certPem },
    ];
    for (const { host, not } of cases) {
      const result = await handshake(s.server.port, host, s.caPem);
      assert.equal(result.authorized, true, `${host}: ${result.authorizationError}`);
      assert.notEqual(result.fingerprint256, new X509Certificate(not).fingerprint256, host);
      const stored = await new CertStorage(s.storage).load('internal', host);
      assert.equal(stored?.pair.fingerprint256, result.fingerprint256, host);
    }
    assert.deepEqual(s.issuer.calls, cases.map((c) => c.host));
    await s.close();
  });

  it('renews in the background when a third of the lifetime remains, serving the current cert meanwhile', async () => {
    const storage = path.join(dir, 'renew');
    const ca = await InternalCa.open(storage);
    const issuer = spyIssuer(ca);
    let offset = 0;
    const manager = new IssuingManager({
      mode: 'internal',
      storage: await CertStorage.open(storage),
      issuer,
      policy: policy(),
      metrics: new MetricsRegistry(),
      cacheSize: 10,
      now: () => Date.now() + offset,
    });
    const server = await startTlsServer(manager);
    const first = await handshake(server.port, 'renew.example.org', ca.certPem);
    assert.equal(issuer.calls.length, 1);

    offset = 15 * DAY; // 16 of 31 days used: not due yet
    assert.equal((await handshake(server.port, 'renew.example.org', ca.certPem)).fingerprint256, first.fingerprint256);
    await manager.idle();
    assert.equal(issuer.calls.length, 1);

    offset = 21 * DAY; // 22 of 31 days used: due
    const during = await Promise.all(Array.from({ length: 5 }, () => handshake(server.port, 'renew.example.org', ca.certPem)));
    assert.ok(during.every((r) => r.fingerprint256 === first.fingerprint256), 'current cert served while renewing');
    await manager.idle();
    assert.equal(issuer.calls.length, 2, 'one renewal for concurrent handshakes');

    offset = 0;
    const renewed = await handshake(server.port, 'renew.example.org', ca.certPem);
    assert.equal(renewed.authorized, true);
    assert.notEqual(renewed.fingerprint256, first.fingerprint256);
    const stored = await new CertStorage(storage).load('internal', 'renew.example.org');
    assert.equal(stored?.pair.fingerprint256, renewed.fingerprint256);
    await server.close();
  });

  it('backs off after a failed issuance instead of retrying on every handshake', async () => {
    const storage = path.join(dir, 'backoff');
    await InternalCa.open(storage);
    let calls = 0;
    const failing: Issuer = {
      name: 'internal',
      async issue() {
        calls++;
        throw new Error('upstream down');
      },
    };
    const metrics = new MetricsRegistry();
    let now = Date.now();
    const manager = new IssuingManager({
      mode: 'internal',
      storage: await CertStorage.open(storage),
      issuer: failing,
      policy: policy(),
      metrics,
      cacheSize: 10,
      now: () => now,
      backoff: { initialMs: 1000, maxMs: 4000 },
    });
    assert.equal(await manager.secureContext('fail.example.org'), undefined);
    assert.equal(await manager.secureContext('fail.example.org'), undefined);
    assert.equal(calls, 1);
    now += 1001;
    assert.equal(await manager.secureContext('fail.example.org'), undefined);
    assert.equal(calls, 2);
    assert.equal(metrics.counter('aleph_edge_cert_issue_failures_total', '').get({ issuer: 'internal' }), 2);
    assert.deepEqual((await listFiles(storage)).filter((f) => f.includes('fail.example.org')), []);
    // One record per host drives both the backoff and the state the status API shows.
    assert.deepEqual(manager.renewalState('fail.example.org'), {
      failures: 2,
      lastError: 'upstream down',
      lastAttempt: new Date(now).toISOString(),
      nextAttempt: new Date(now + 2000).toISOString(),
    });
    assert.equal(manager.inBackoff('fail.example.org'), true);
    assert.equal(manager.renewalState('other.example.org'), undefined);
  });

  it('serves a stored wildcard for a host when wildcard lookup is on', async () => {
    const storage = path.join(dir, 'wild');
    const ca = await InternalCa.open(storage);
    const store = await CertStorage.open(storage);
    await store.save('internal', '*.wild.example.org', await ca.issue('*.wild.example.org'));
    assert.deepEqual((await readdir(path.join(storage, 'internal'))).sort(), ['_wildcard.wild.example.org', 'ca.crt', 'ca.key']);
    const issuer = spyIssuer(ca);
    const manager = await createCertificateManager(tlsSettings({ storage, wildcard: { enabled: true, dnsHook: '' } }), {
      policy: policy(),
      metrics: new MetricsRegistry(),
      issuer,
    });
    const server = await startTlsServer(manager);
    const result = await handshake(server.port, 'a.wild.example.org', ca.certPem);
    assert.equal(result.authorized, true, result.authorizationError);
    assert.equal(result.subjectaltname, 'DNS:*.wild.example.org');
    assert.equal(issuer.calls.length, 0);
    // Two labels deep is not covered: a per-host cert is issued.
    const deep = await handshake(server.port, 'b.a.wild.example.org', ca.certPem);
    assert.equal(deep.subjectaltname, 'DNS:b.a.wild.example.org');
    assert.deepEqual(issuer.calls, ['b.a.wild.example.org']);
    assert.deepEqual((await manager.list()).map((c) => c.host), ['*.wild.example.org', 'b.a.wild.example.org']);
    await server.close();
  });

  it('answers HTTP-01 challenges from its challenge store', async () => {
    const s = await setup();
    assert.equal(await s.manager.httpChallenge('token-1'), undefined);
    s.manager.challenges.set('token-1', 'token-1.thumbprint');
    assert.equal(await s.manager.httpChallenge('token-1'), 'token-1.thumbprint');
    s.manager.challenges.delete('token-1');
    assert.equal(await s.manager.httpChallenge('token-1'), undefined);
    await s.close();
  });
});
