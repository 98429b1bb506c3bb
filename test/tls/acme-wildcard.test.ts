// Wildcard certificates by DNS-01 through the exec hook (test/fixtures/acme/dns-hook.sh,
// which publishes TXT records in pebble-challtestsrv), obtained at start-up; hosts it
// covers never get an order of their own; a failing hook is reported, not hidden.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DOMAIN, FIXTURES, handshake, httpsGet, startAcmeNode, startPebble, tempDir, type Pebble } from './acme-harness.js';

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('wildcard certificate by DNS-01 exec hook', () => {
  let pebble: Pebble;
  let root: string;
  let work: { dir: string; cleanup: () => Promise<void> };
  const hook = path.join(FIXTURES, 'dns-hook.sh');

  before(async () => {
    pebble = await startPebble();
    root = await pebble.root();
    work = await tempDir('aleph-edge-acme-wild-');
    process.env.CHALLTESTSRV = pebble.challtestsrv;
    process.env.HOOK_LOG = path.join(work.dir, 'hook.log');
  });
  after(async () => {
    delete process.env.CHALLTESTSRV;
    delete process.env.HOOK_LOG;
    await pebble?.stop();
    await work?.cleanup();
  });

  it('obtains *.domain + domain at start-up; covered hosts use it with zero new orders', async () => {
    const n = await startAcmeNode({
      pebble, dir: work.dir, storage: path.join(work.dir, 'certs'),
      hosts: ['app.other.test'],
      tls: ['[tls.wildcard]', 'enabled = true', `dns_hook = "${hook}"`],
    });
    try {
      const before = pebble.orders();
      // Started in the background at start-up: the first handshake may have to wait for it.
      const label = 'klpja5kogw7hf4sz4nkla7nlykjc7jljywy22fafisns55myqupq';
      await until(async () => (await handshake(n.httpsPort, `${label}.${DOMAIN}`, root)).ok, 10_000, 'the wildcard');
      const afterWildcard = pebble.orders();
      assert.ok(afterWildcard - before <= 1);
      const sub = await handshake(n.httpsPort, `${label}.${DOMAIN}`, root);
      assert.ok(sub.ok);
      assert.match(sub.cert.subjectaltname ?? '', new RegExp(`DNS:\\*\\.${DOMAIN.replace('.', '\\.')}`));
      assert.match(sub.cert.subjectaltname ?? '', new RegExp(`DNS:${DOMAIN.replace('.', '\\.')}(,|$)`));
      // The bare domain and more covered hosts: served from the wildcard, no new order.
      const bare = await httpsGet(n.httpsPort, DOMAIN, root);
      assert.equal(bare.status, 200);
      assert.equal(bare.cert.fingerprint256, sub.cert.fingerprint256);
      for (const host of [`${label}.${DOMAIN}`, `abc.${DOMAIN}`]) {
        const other = await handshake(n.httpsPort, host, root);
        if (host.startsWith('abc')) assert.equal(other.ok && other.cert.fingerprint256, sub.cert.fingerprint256);
      }
      assert.equal(pebble.orders(), afterWildcard, 'covered hosts never get their own order');
      // A host outside the wildcard still gets its own certificate on demand.
      assert.equal((await httpsGet(n.httpsPort, 'app.other.test', root)).status, 200);
      assert.equal(pebble.orders(), afterWildcard + 1);
      const hookLog = await readFile(process.env.HOOK_LOG!, 'utf8');
      assert.match(hookLog, new RegExp(`^present _acme-challenge\\.${DOMAIN.replace('.', '\\.')} \\S+$`, 'm'));
      assert.match(hookLog, /^cleanup _acme-challenge\./m);
      assert.equal(n.node.metrics.value('aleph_edge_acme_orders_succeeded_total', { challenge: 'dns-01' }), 1);
    } finally {
      await n.close();
    }
  });

  it('a failing hook fails the order with its exit status and no certificate', async () => {
    const failing = path.join(work.dir, 'failing-hook.sh');
    const { writeFile, chmod } = await import('node:fs/promises');
    await writeFile(failing, '#!/bin/sh\necho "no such zone" >&2\nexit 3\n');
    await chmod(failing, 0o755);
    const n = await startAcmeNode({
      pebble, dir: work.dir, storage: path.join(work.dir, 'certs-failing'),
      tls: ['[tls.wildcard]', 'enabled = true', `dns_hook = "${failing}"`],
    });
    try {
      await until(async () => n.node.metrics.value('aleph_edge_acme_orders_failed_total', { challenge: 'dns-01' }) === 1, 10_000, 'the failed order');
      const covered = await handshake(n.httpsPort, `abc.${DOMAIN}`, root);
      assert.equal(covered.ok, false);
      // Counted once the failure has come back through the manager (backoff noted),
      // which on a loaded machine can be after the order's own counter.
      await until(async () => n.node.metrics.value('aleph_edge_cert_renewals_total', { result: 'failed' }) === 1, 10_000, 'the failed renewal');
    } finally {
      await n.close();
    }
  });
});
