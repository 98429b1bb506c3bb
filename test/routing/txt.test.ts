// DnsTxtLookup against a real DNS server over UDP (test/routing/dns-server.ts).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NotFoundError } from '../../src/common/errors.js';
import type { RoutingSettings } from '../../src/config/types.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { DnsTxtLookup, Router } from '../../src/routing/index.js';
import type { DnsTxtLookupOptions } from '../../src/routing/index.js';
import { FakeClock } from '../helpers/clock.js';
import { TestDnsServer } from './dns-server.js';
import { hashOf, rejectsWith } from './helpers.js';

const DOMAIN = 'vm.example.org';
const H = hashOf('txt-program');
const H2 = hashOf('txt-program-2');

describe('DnsTxtLookup over UDP', () => {
  const server = new TestDnsServer();
  let address = '';

  before(async () => {
    address = await server.start();
  });
  after(async () => {
    await server.close();
  });

  function make(overrides: Partial<RoutingSettings> = {}, options: DnsTxtLookupOptions = {}) {
    const metrics = new MetricsRegistry();
    const settings: RoutingSettings = {
      dnsServers: [address],
      txtCacheSize: 100,
      negativeTtlMs: 60_000,
      maxTtlMs: 3_600_000,
      // Long: c-ares sends a second query when the first try times out, which a loaded
      // machine would otherwise show as two queries where the test counts one.
      lookupTimeoutMs: 30_000,
      ...overrides,
    };
    // Cache TTLs run on a clock the test moves: a loaded machine cannot expire an entry
    // between two lookups the test means to be back to back.
    const clock = new FakeClock();
    const txt = new DnsTxtLookup(settings, { metrics, clock, ...options });
    const router = new Router({ domain: DOMAIN, txt, metrics });
    const results = metrics.counter('aleph_edge_txt_lookups_total', '');
    return { txt, router, results, clock };
  }

  it('a positive answer routes and is cached', async () => {
    server.setTxt('_aleph-id.custom.test', [[H]], 300);
    const { router, results } = make();
    assert.deepEqual(await router.route({ host: 'custom.test', path: '/a?b' }), {
      kind: 'program',
      hash: H,
      path: '/a?b',
      via: 'txt',
    });
    assert.equal(server.queryCount('_aleph-id.custom.test'), 1);
    assert.deepEqual((await router.route({ host: 'Custom.Test:443', path: '/' })).kind, 'program');
    assert.equal(server.queryCount('_aleph-id.custom.test'), 1, 'second lookup served from cache');
    assert.equal(results.get({ result: 'found' }), 1);
    assert.equal(results.get({ result: 'cached' }), 1);
  });

  it('concatenates multi-string records and picks the first valid hash among several', async () => {
    server.setTxt('_aleph-id.split.test', [[H.slice(0, 20), H.slice(20).toUpperCase()]]);
    server.setTxt('_aleph-id.several.test', [['v=spf1 -all'], [` ${H2} `], [H]]);
    const { txt } = make();
    assert.equal(await txt.lookup('split.test'), H);
    assert.equal(await txt.lookup('several.test'), H2);
  });

  it('a record without a hash is 404 "invalid _aleph-id record", cached like a negative answer', async () => {
    server.setTxt('_aleph-id.junk.test', [['hello'], [H.slice(1)]]);
    const { router, results } = make();
    await rejectsWith(router.route({ host: 'junk.test', path: '/' }), NotFoundError, 'invalid _aleph-id record');
    await rejectsWith(router.route({ host: 'junk.test', path: '/' }), NotFoundError, 'invalid _aleph-id record');
    assert.equal(server.queryCount('_aleph-id.junk.test'), 1);
    assert.equal(results.get({ result: 'invalid' }), 1);
  });

  it('NXDOMAIN and NODATA are 404 and cached (no second query)', async () => {
    server.setTxt('_aleph-id.empty.test', []); // the name exists, with no TXT record
    const { router, results } = make();
    for (const host of ['missing.test', 'empty.test']) {
      await rejectsWith(router.route({ host, path: '/' }), NotFoundError, `no program for host ${host}`);
      await rejectsWith(router.route({ host, path: '/' }), NotFoundError, `no program for host ${host}`);
      assert.equal(server.queryCount(`_aleph-id.${host}`), 1, host);
    }
    assert.equal(results.get({ result: 'absent' }), 2);
    assert.equal(results.get({ result: 'cached' }), 2);
  });

  it('expiry of a cached answer causes a new query', async () => {
    server.setTxt('_aleph-id.short.test', [[H]], 1);
    // maxTtlMs caps the fixed positive TTL: min(120 ms, 5 min).
    const { txt, clock } = make({ maxTtlMs: 120, negativeTtlMs: 120 });
    assert.equal(await txt.lookup('short.test'), H);
    assert.equal(await txt.lookup('gone.test'), undefined);
    assert.equal(await txt.lookup('short.test'), H);
    assert.equal(await txt.lookup('gone.test'), undefined);
    assert.equal(server.queryCount('_aleph-id.short.test'), 1);
    assert.equal(server.queryCount('_aleph-id.gone.test'), 1);

    // The record changes; the new value is seen once the cached one expires.
    server.setTxt('_aleph-id.short.test', [[H2]], 1);
    await clock.advance(119);
    assert.equal(await txt.lookup('short.test'), H, 'still cached 1 ms before its TTL');
    assert.equal(server.queryCount('_aleph-id.short.test'), 1);
    await clock.advance(2); // past the TTL (an entry is stale once its age exceeds it)
    assert.equal(await txt.lookup('short.test'), H2);
    assert.equal(await txt.lookup('gone.test'), undefined);
    assert.equal(server.queryCount('_aleph-id.short.test'), 2);
    assert.equal(server.queryCount('_aleph-id.gone.test'), 2);
  });

  it('20 concurrent lookups for one host make one query', async () => {
    server.setTxt('_aleph-id.busy.test', [[H]]);
    const { txt, results } = make();
    const answers = await Promise.all(Array.from({ length: 20 }, () => txt.lookup('busy.test')));
    assert.deepEqual(answers, Array(20).fill(H));
    assert.equal(server.queryCount('_aleph-id.busy.test'), 1);
    assert.equal(results.get({ result: 'found' }), 1);
    assert.equal(results.get({ result: 'shared' }), 19);
  });

  it('concurrent lookups of a missing host also share one query', async () => {
    const { txt } = make();
    const answers = await Promise.all(Array.from({ length: 20 }, () => txt.lookup('nobody.test')));
    assert.deepEqual(answers, Array(20).fill(undefined));
    assert.equal(server.queryCount('_aleph-id.nobody.test'), 1);
  });

  describe('failures', () => {
    after(() => {
      server.behaviour = 'answer';
    });

    it('a server that does not answer: the lookup is bounded by the timeout', async () => {
      server.behaviour = 'silent';
      const { router, results } = make({ lookupTimeoutMs: 300 }, { errorTtlMs: 150 });
      const started = performance.now();
      await rejectsWith(router.route({ host: 'slow.test', path: '/' }), NotFoundError, 'could not resolve _aleph-id record');
      const elapsed = performance.now() - started;
      assert.ok(elapsed >= 250, `gave up after ${elapsed.toFixed(0)} ms, before the timeout`);
      assert.equal(results.get({ result: 'timeout' }), 1);
      assert.equal(await router.routesTo('slow.test'), false);
    });

    it('SERVFAIL is 404 "could not resolve", remembered only briefly', async () => {
      server.behaviour = 'servfail';
      // negativeTtlMs is a minute, yet a failure is retried after errorTtlMs.
      const { txt, results, clock } = make({}, { errorTtlMs: 100 });
      await rejectsWith(txt.lookup('flaky.test'), NotFoundError, 'could not resolve _aleph-id record');
      await rejectsWith(txt.lookup('flaky.test'), NotFoundError, 'could not resolve _aleph-id record');
      assert.equal(server.queryCount('_aleph-id.flaky.test'), 1, 'a burst does not hammer the resolver');
      assert.equal(results.get({ result: 'error' }), 1);

      server.behaviour = 'answer';
      server.setTxt('_aleph-id.flaky.test', [[H]]);
      await clock.advance(101);
      assert.equal(await txt.lookup('flaky.test'), H);
      assert.equal(server.queryCount('_aleph-id.flaky.test'), 2);
    });

    it('the default error TTL is min(negativeTtlMs, 5 s)', async () => {
      server.behaviour = 'servfail';
      const { txt, clock } = make({ negativeTtlMs: 100 });
      await rejectsWith(txt.lookup('flaky2.test'), NotFoundError, 'could not resolve _aleph-id record');
      await clock.advance(99);
      await rejectsWith(txt.lookup('flaky2.test'), NotFoundError, 'could not resolve _aleph-id record');
      assert.equal(server.queryCount('_aleph-id.flaky2.test'), 1, 'remembered for negativeTtlMs');
      await clock.advance(2);
      await rejectsWith(txt.lookup('flaky2.test'), NotFoundError, 'could not resolve _aleph-id record');
      assert.equal(server.queryCount('_aleph-id.flaky2.test'), 2);
    });
  });
});
