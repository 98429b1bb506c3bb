import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { addLogSink, type LogRecord } from '../../src/common/log.js';
import { MetricsRegistry } from '../../src/metrics/registry.js';
import type { TlsFilePair } from '../../src/config/types.js';
import { createCertificateManager, TlsSetupError } from '../../src/tls/index.js';
import { InternalCa } from '../../src/tls/internal-ca.js';
import type { PemPair } from '../../src/tls/pair.js';
import { closeAllServers, handshake, listFiles, policy, startTlsServer, tempDir, tlsSettings } from './helpers.js';

const DAY = 24 * 3600_000;

describe('files mode', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let ca: InternalCa;
  before(async () => {
    ({ dir, cleanup } = await tempDir());
    ca = await InternalCa.open(path.join(dir, 'ca'));
  });
  after(async () => {
    await closeAllServers();
    await cleanup();
  });

  async function writePair(name: string, pair: PemPair, hosts: string[]): Promise<TlsFilePair> {
    const cert = path.join(dir, `${name}.crt`);
    const key = path.join(dir, `${name}.key`);
    await writeFile(cert, pair.certPem);
    await writeFile(key, pair.keyPem, { mode: 0o600 });
    return { hosts, cert, key };
  }

  function manager(files: TlsFilePair[]) {
    return createCertificateManager(tlsSettings({ mode: 'files', storage: path.join(dir, 'unused'), files }), {
      policy: policy(() => {
        throw new Error('files mode must not consult the policy');
      }),
      metrics: new MetricsRegistry(),
    });
  }

  it('serves exact pairs before wildcards, wildcards one label deep only, and issues nothing', async () => {
    const exact = await writePair('exact', await ca.issue('exact.example.org'), ['exact.example.org']);
    const wildcard = await writePair('wild', await ca.issue('*.example.org'), ['*.example.org']);
    const m = await manager([wildcard, exact]);
    const server = await startTlsServer(m);

    const a = await handshake(server.port, 'exact.example.org', ca.certPem);
    assert.equal(a.authorized, true, a.authorizationError);
    assert.equal(a.subjectaltname, 'DNS:exact.example.org');
    assert.equal(a.curve, 'prime256v1');

    const b = await handshake(server.port, 'Other.Example.org.', ca.certPem);
    assert.equal(b.authorized, true, b.authorizationError);
    assert.equal(b.subjectaltname, 'DNS:*.example.org');

    await assert.rejects(handshake(server.port, 'a.b.example.org', ca.certPem));
    await assert.rejects(handshake(server.port, 'example.org', ca.certPem));
    await assert.rejects(handshake(server.port, 'unknown.test', ca.certPem));
    await server.close();

    const listed = await m.list();
    assert.deepEqual(listed.map((c) => [c.host, c.source]), [['*.example.org', 'files'], ['exact.example.org', 'files']]);
    assert.deepEqual(await listFiles(dir).then((f) => f.filter((x) => x.startsWith('unused'))), []);
  });

  it('a mismatched pair is a startup error naming the files', async () => {
    const one = await ca.issue('one.example.org');
    const two = await ca.issue('two.example.org');
    const bad = await writePair('mismatch', { certPem: one.certPem, keyPem: two.keyPem }, ['one.example.org']);
    const good = await writePair('good', two, ['two.example.org']);
    await assert.rejects(manager([good, bad]), (err: unknown) => {
      assert.ok(err instanceof TlsSetupError);
      assert.match(err.message, /tls\.files\[1\]/);
      assert.ok(err.message.includes(bad.cert), err.message);
      assert.match(err.message, /does not match/);
      return true;
    });
  });

  it('an unreadable or missing file is a startup error naming it', async () => {
    const pair = await writePair('unreadable', await ca.issue('u.example.org'), ['u.example.org']);
    const missing = { ...pair, key: path.join(dir, 'nope.key') };
    await assert.rejects(manager([missing]), (err: unknown) => err instanceof TlsSetupError && err.message.includes(missing.key) && /ENOENT/.test(err.message));
    const garbage = path.join(dir, 'garbage.crt');
    await writeFile(garbage, 'not a certificate');
    await assert.rejects(manager([{ ...pair, cert: garbage }]), (err: unknown) => err instanceof TlsSetupError && err.message.includes(garbage));
    if (process.getuid?.() !== 0) {
      await chmod(pair.key, 0o000);
      await assert.rejects(manager([pair]), (err: unknown) => err instanceof TlsSetupError && err.message.includes(pair.key));
    }
  });

  it('an expired pair loads with a warning', async () => {
    const records: LogRecord[] = [];
    const remove = addLogSink((r) => records.push(r));
    try {
      const now = Date.now();
      const old = await ca.mintLeaf('old.example.org', { notBefore: new Date(now - 60 * DAY), notAfter: new Date(now - DAY) });
      const m = await manager([await writePair('expired', old, ['old.example.org'])]);
      assert.equal((await m.list()).length, 1);
      assert.ok(records.some((r) => r.level === 'warn' && /expired/.test(r.message) && String(r.fields.cert).endsWith('expired.crt')));
      assert.ok(await m.secureContext('old.example.org'));
    } finally {
      remove();
    }
  });
});
