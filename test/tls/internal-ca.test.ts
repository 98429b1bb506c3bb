import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, stat, writeFile, rm, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { MetricsRegistry } from '../../src/metrics/registry.js';
import { createCertificateManager, internalCaCertPath, TlsSetupError } from '../../src/tls/index.js';
import { InternalCa } from '../../src/tls/internal-ca.js';
import { closeAllServers, handshake, listFiles, policy, startTlsServer, tempDir, tlsSettings } from './helpers.js';

describe('internal CA', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ dir, cleanup } = await tempDir()));
  after(async () => {
    await closeAllServers();
    await cleanup();
  });

  it('is created once with the documented shape and reused by a second manager on the same folder', async () => {
    const storage = path.join(dir, 'reuse');
    const settings = tlsSettings({ storage });
    const first = await createCertificateManager(settings, { policy: policy(), metrics: new MetricsRegistry() });
    const caPath = internalCaCertPath(storage);
    assert.equal(caPath, path.join(storage, 'internal', 'ca.crt'));
    const caPem = await readFile(caPath, 'utf8');
    const ca = new X509Certificate(caPem);
    assert.equal(ca.ca, true);
    assert.match(ca.subject, /^CN=aleph-edge internal CA [0-9a-f]{8}$/);
    assert.equal(ca.publicKey.asymmetricKeyType, 'ec');
    assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const years = (Date.parse(ca.validTo) - Date.parse(ca.validFrom)) / (365 * 24 * 3600_000);
    assert.ok(years > 9.9 && years < 10.1, `validity ${years} years`);
    const parsed = new x509.X509Certificate(caPem);
    const usages = parsed.getExtension(x509.KeyUsagesExtension)?.usages;
    assert.equal(usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.ca, true);
    assert.equal((await stat(caPath)).mode & 0o777, 0o644);
    assert.equal((await stat(path.join(storage, 'internal', 'ca.key'))).mode & 0o777, 0o600);
    assert.equal((await stat(path.join(storage, 'internal'))).mode & 0o777, 0o700);
    assert.equal((await stat(storage)).mode & 0o777, 0o700);

    const server1 = await startTlsServer(first);
    const viaFirst = await handshake(server1.port, 'one.test', caPem);
    await server1.close();
    assert.equal(viaFirst.authorized, true, viaFirst.authorizationError);

    const caKeyBefore = await readFile(path.join(storage, 'internal', 'ca.key'), 'utf8');
    const second = await createCertificateManager(settings, { policy: policy(), metrics: new MetricsRegistry() });
    const caAfter = new X509Certificate(await readFile(caPath, 'utf8'));
    assert.equal(caAfter.fingerprint256, ca.fingerprint256);
    assert.equal(await readFile(path.join(storage, 'internal', 'ca.key'), 'utf8'), caKeyBefore);

    // A leaf minted by the second instance chains to the same CA.
    const server2 = await startTlsServer(second);
    const viaSecond = await handshake(server2.port, 'two.test', caPem);
    await server2.close();
    assert.equal(viaSecond.authorized, true, viaSecond.authorizationError);
    // No stray CA files (lock, temp) left behind.
    const internalFiles = (await listFiles(path.join(storage, 'internal'))).filter((f) => !f.includes(path.sep));
    assert.deepEqual(internalFiles, ['ca.crt', 'ca.key']);
  });

  it('mints leaves with SAN, serverAuth, P-256 and a 30-day validity backdated one hour', async () => {
    const ca = await InternalCa.open(path.join(dir, 'leaf'));
    const before = Date.now();
    const { certPem } = await ca.issue('leaf.example.org');
    const leaf = new X509Certificate(certPem);
    assert.equal(leaf.subjectAltName, 'DNS:leaf.example.org');
    assert.equal(leaf.ca, false);
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']); // node reports the EKU here
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(leaf.verify(new X509Certificate(ca.certPem).publicKey));
    const notBefore = Date.parse(leaf.validFrom);
    const notAfter = Date.parse(leaf.validTo);
    assert.ok(Math.abs(before - 3600_000 - notBefore) < 5_000);
    assert.ok(Math.abs(before + 30 * 24 * 3600_000 - notAfter) < 5_000);
    const other = new X509Certificate((await ca.issue('leaf.example.org')).certPem);
    assert.notEqual(other.serialNumber, leaf.serialNumber);
  });

  it('concurrent opens on an empty folder agree on one CA', async () => {
    const storage = path.join(dir, 'race');
    const cas = await Promise.all([InternalCa.open(storage), InternalCa.open(storage), InternalCa.open(storage)]);
    assert.equal(new Set(cas.map((ca) => ca.fingerprint256)).size, 1);
  });

  it('refuses corrupt, mismatched or half-present CA files without touching them', async () => {
    const good = path.join(dir, 'good');
    const other = path.join(dir, 'other');
    await InternalCa.open(good);
    await InternalCa.open(other);
    const goodInternal = path.join(good, 'internal');
    const otherInternal = path.join(other, 'internal');

    const expectError = async (storage: string, pattern: RegExp) => {
      const files = await listFiles(storage);
      const contents = await Promise.all(files.map((f) => readFile(path.join(storage, f), 'utf8')));
      await assert.rejects(
        createCertificateManager(tlsSettings({ storage }), { policy: policy(), metrics: new MetricsRegistry() }),
        (err: unknown) => err instanceof TlsSetupError && pattern.test(err.message),
      );
      assert.deepEqual(await listFiles(storage), files);
      assert.deepEqual(await Promise.all(files.map((f) => readFile(path.join(storage, f), 'utf8'))), contents);
    };

    // Corrupt certificate.
    const corrupt = path.join(dir, 'corrupt');
    await InternalCa.open(corrupt);
    await writeFile(path.join(corrupt, 'internal', 'ca.crt'), '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n');
    await expectError(corrupt, new RegExp(`${escape(path.join(corrupt, 'internal', 'ca.crt'))} does not parse`));

    // Key of another CA.
    const mismatched = path.join(dir, 'mismatched');
    await InternalCa.open(mismatched);
    await copyFile(path.join(otherInternal, 'ca.key'), path.join(mismatched, 'internal', 'ca.key'));
    await expectError(mismatched, /ca\.key does not match .*ca\.crt/);

    // Key alone (certificate deleted).
    const halfDir = path.join(dir, 'half');
    await InternalCa.open(halfDir);
    await rm(path.join(halfDir, 'internal', 'ca.crt'));
    await expectError(halfDir, /ca\.crt is missing/);

    // Untouched CA still loads.
    const reopened = await InternalCa.open(good);
    assert.equal(reopened.fingerprint256, new X509Certificate(await readFile(path.join(goodInternal, 'ca.crt'))).fingerprint256);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
