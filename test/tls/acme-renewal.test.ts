// Renewal against Pebble issuing short-lived certificates (certificateValidityPeriod):
// the replacement is ordered in the background at a third of the lifetime left and
// swapped in without one failed handshake; a failing renewal shows in /certs and metrics.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { handshake, startAcmeNode, usePebble, type Pebble, type TempDir } from './acme-harness.js';

const VALIDITY_S = 9;

describe('renewal of short-lived certificates', () => {
  let pebble: Pebble;
  let root: string;
  let work: TempDir;
  usePebble('aleph-edge-acme-renew-', { validitySeconds: VALIDITY_S }, (env) => ({ pebble, root, work } = env));

  it('replaces the certificate before expiry with no failed handshake; failures are visible', async () => {
    const n = await startAcmeNode({ pebble, dir: work.dir, storage: path.join(work.dir, 'certs'), hosts: ['app.renew.test'], renewalIntervalMs: 300 });
    try {
      const first = await handshake(n.httpsPort, 'app.renew.test', root);
      assert.ok(first.ok, first.ok ? '' : first.error.message);
      const lifetime = Date.parse(first.cert.valid_to) - Date.parse(first.cert.valid_from);
      assert.ok(lifetime <= (VALIDITY_S + 1) * 1000, `short-lived certificate (${lifetime} ms)`);
      const seen = new Set([first.cert.fingerprint256]);
      const failures: string[] = [];
      const deadline = Date.now() + lifetime + 3000;
      // Handshake continuously through the renewal window.
      while (seen.size < 2 && Date.now() < deadline) {
        const results = await Promise.all([1, 2, 3].map(() => handshake(n.httpsPort, 'app.renew.test', root)));
        for (const r of results) {
          if (r.ok) seen.add(r.cert.fingerprint256);
          else failures.push(r.error.message);
        }
        await new Promise((r) => setTimeout(r, 40));
      }
      assert.deepEqual(failures, []);
      assert.equal(seen.size, 2, 'the certificate was replaced');
      assert.ok(Date.now() < Date.parse(first.cert.valid_to), 'replaced before the old one expired');

      // Pebble gone: the next renewal fails, retries with backoff, and says so.
      await pebble.stop();
      const giveUp = Date.now() + 60_000; // a ceiling for a failing run, not a timing claim
      for (;;) {
        const certs = (await n.status('/certs')) as Array<{ host: string; renewal?: { failures: number; lastError?: string } }>;
        const entry = certs.find((c) => c.host === 'app.renew.test');
        if (entry?.renewal && entry.renewal.failures >= 1) break;
        assert.ok(Date.now() < giveUp, 'a failed renewal shows in /certs');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(n.node.metrics.value('aleph_edge_cert_renewals_total', { result: 'failed' }) >= 1);
    } finally {
      await n.close();
    }
  });
});
