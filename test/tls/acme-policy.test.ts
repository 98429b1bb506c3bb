// The on-demand policy pieces of acme mode: on_demand = false, the ask URL, the
// issue_rate bucket (against Pebble), and the bounded handshake wait (a slow issuer
// behind a real TLS listener: that handshake fails in time, other hosts are served).

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MetricsRegistry } from '../../src/metrics/registry.js';
import { InternalCa } from '../../src/tls/internal-ca.js';
import { IssuingManager } from '../../src/tls/manager.js';
import { OnDemandPolicy } from '../../src/tls/policy.js';
import { TokenBucket } from '../../src/tls/rate-limit.js';
import { CertStorage } from '../../src/tls/storage.js';
import { createLogger } from '../../src/common/log.js';
import { handshake, startAcmeNode, startPebble, tempDir, type Pebble } from './acme-harness.js';
import { startTlsServer } from './helpers.js';

describe('acme on-demand policy against Pebble', () => {
  let pebble: Pebble;
  let root: string;
  let work: { dir: string; cleanup: () => Promise<void> };
  let ask: http.Server;
  const asked: string[] = [];

  before(async () => {
    pebble = await startPebble();
    root = await pebble.root();
    work = await tempDir('aleph-edge-acme-policy-');
    ask = http.createServer((req, res) => {
      const domain = new URL(req.url!, 'http://x').searchParams.get('domain') ?? '';
      asked.push(domain);
      res.writeHead(domain.startsWith('yes.') ? 200 : 403).end();
    });
    await new Promise<void>((resolve) => ask.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    ask?.close();
    await pebble?.stop();
    await work?.cleanup();
  });

  it('on_demand = false orders nothing at handshake time, even for a routed host', async () => {
    const n = await startAcmeNode({ pebble, dir: work.dir, storage: path.join(work.dir, 'off'), hosts: ['app.off.test'], tls: ['on_demand = false'] });
    try {
      const before = pebble.orders();
      assert.equal((await handshake(n.httpsPort, 'app.off.test', root)).ok, false);
      assert.equal(pebble.orders(), before);
      assert.equal(n.node.metrics.value('aleph_edge_cert_policy_denials_total'), 1);
    } finally {
      await n.close();
    }
  });

  it('the ask URL allows hosts that do not route (2xx) and refuses the others', async () => {
    const url = `http://127.0.0.1:${(ask.address() as AddressInfo).port}/check`;
    const n = await startAcmeNode({ pebble, dir: work.dir, storage: path.join(work.dir, 'ask'), tls: [`ask = "${url}"`] });
    try {
      const before = pebble.orders();
      assert.equal((await handshake(n.httpsPort, 'yes.asked.test', root)).ok, true);
      assert.equal((await handshake(n.httpsPort, 'no.asked.test', root)).ok, false);
      assert.equal(pebble.orders() - before, 1);
      assert.ok(asked.includes('yes.asked.test') && asked.includes('no.asked.test'));
    } finally {
      await n.close();
    }
  });

  it('issue_rate: orders past the burst are refused and counted', async () => {
    const hosts = ['a.rate.test', 'b.rate.test', 'c.rate.test'];
    const n = await startAcmeNode({ pebble, dir: work.dir, storage: path.join(work.dir, 'rate'), hosts, tls: ['issue_rate = { burst = 2, interval = "1h" }'] });
    try {
      const before = pebble.orders();
      const results = [];
      for (const host of hosts) results.push((await handshake(n.httpsPort, host, root)).ok);
      assert.deepEqual(results, [true, true, false]);
      assert.equal(pebble.orders() - before, 2);
      assert.equal(n.node.metrics.value('aleph_edge_cert_rate_limited_total'), 1);
    } finally {
      await n.close();
    }
  });
});

describe('bounded handshake wait', () => {
  it('a handshake waiting on a slow order fails after the wait; other hosts keep being served', async () => {
    const work = await tempDir('aleph-edge-acme-wait-');
    try {
      const storage = await CertStorage.open(path.join(work.dir, 'certs'));
      const ca = await InternalCa.open(storage.root);
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const slow = { name: ca.name, issue: async (host: string) => { if (host.startsWith('slow.')) await gate; return ca.issue(host); } };
      const log = createLogger('tls');
      const manager = new IssuingManager({
        mode: 'acme', metrics: new MetricsRegistry(), cacheSize: 10, storage, issuer: slow,
        policy: new OnDemandPolicy({ onDemand: true, routesTo: async () => true, ask: '', wildcardDomains: [], log }),
        rateLimit: new TokenBucket({ burst: 10, intervalMs: 60_000 }),
        issueWaitMs: 300,
      });
      const server = await startTlsServer(manager);
      try {
        // An order that outlasts the wait goes on in the background: a later handshake gets it.
        const servedEventually = async (host: string) => {
          for (let i = 0; i < 200; i++) {
            if ((await handshake(server.port, host, ca.certPem)).ok) return true;
            await sleep(50);
          }
          return false;
        };
        // The fast host's certificate first (on a loaded machine even its order may outlast 300 ms).
        assert.equal(await servedEventually('fast.wait.test'), true);
        const pending = handshake(server.port, 'slow.wait.test', ca.certPem);
        await sleep(50);
        // Served while the slow order is outstanding.
        assert.equal((await handshake(server.port, 'fast.wait.test', ca.certPem)).ok, true);
        const slowResult = await pending;
        assert.equal(slowResult.ok, false);
        // Ended by the server after the wait, not by the client's own handshake timeout.
        assert.notEqual(slowResult.ok === false && slowResult.error.message, 'handshake timed out');
        release();
        assert.equal(await servedEventually('slow.wait.test'), true, 'the background order served a later handshake');
      } finally {
        await server.close();
        await manager.close();
      }
    } finally {
      await work.cleanup();
    }
  });
});

describe('dns hook runner', () => {
  it('passes action, fqdn and value; checks the exit status; enforces the timeout', async () => {
    const { DnsHook } = await import('../../src/tls/dns-hook.js');
    const { writeFile, chmod, readFile } = await import('node:fs/promises');
    const work = await tempDir('aleph-edge-acme-hook-');
    try {
      const hook = path.join(work.dir, 'hook.sh');
      await writeFile(hook, `#!/bin/sh\necho "$@" >> ${work.dir}/calls\ncase "$2" in slow.*) sleep 5 ;; bad.*) echo broken >&2; exit 4 ;; esac\n`);
      await chmod(hook, 0o755);
      const runner = new DnsHook({ command: hook, timeoutMs: 300, log: createLogger('tls') });
      await runner.run('present', '_acme-challenge.ok.test', 'v1');
      assert.equal(await readFile(path.join(work.dir, 'calls'), 'utf8'), 'present _acme-challenge.ok.test v1\n');
      await assert.rejects(runner.run('present', 'bad.test', 'v'), /exited with status 4: broken/);
      await assert.rejects(runner.run('cleanup', 'slow.test', 'v'), /timed out after 300 ms/);
      await assert.rejects(new DnsHook({ command: path.join(work.dir, 'missing'), log: createLogger('tls') }).run('present', 'x', 'y'), /could not run/);
    } finally {
      await work.cleanup();
    }
  });
});
