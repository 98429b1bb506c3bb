import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequestError, NotFoundError } from '../../src/common/errors.js';
import { hashToLabel } from '../../src/common/hash.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { Router } from '../../src/routing/index.js';
import type { Route } from '../../src/routing/index.js';
import { FakeTxt, hashOf, rejectsWith } from './helpers.js';

const DOMAIN = 'vm.example.org';
const H = hashOf('program-1');
const STATIC_HASH = hashOf('static');
const TXT_HASH = hashOf('txt');

function makeRouter(txt = new FakeTxt({})) {
  const metrics = new MetricsRegistry();
  const router = new Router({
    domain: DOMAIN,
    routes: [{ host: 'app.example.com', program: STATIC_HASH }],
    txt,
    metrics,
  });
  return { router, txt, metrics };
}

function program(hash: string, path: string, via: 'path' | 'label' | 'static' | 'txt'): Route {
  return { kind: 'program', hash, path, via };
}

describe('rule 1: bare domain', () => {
  const { router } = makeRouter();
  const route = (path: string, host = DOMAIN) => router.route({ host, path });

  it('routes /vm/<hash>/<rest> with the query kept', async () => {
    assert.deepEqual(await route(`/vm/${H}/api/items?x=1&y=/z`), program(H, '/api/items?x=1&y=/z', 'path'));
    assert.deepEqual(await route(`/vm/${H}/`), program(H, '/', 'path'));
    assert.deepEqual(await route(`/vm/${H}`), program(H, '/', 'path'));
    assert.deepEqual(await route(`/vm/${H}?q=1`), program(H, '/?q=1', 'path'));
    assert.deepEqual(await route(`/vm/${H}/a/./b`), program(H, '/a/./b', 'path'));
  });

  it('normalizes an uppercase hash', async () => {
    assert.deepEqual(await route(`/vm/${H.toUpperCase()}/x`), program(H, '/x', 'path'));
  });

  it('accepts the domain with a port, uppercase or a trailing dot', async () => {
    assert.deepEqual(await route(`/vm/${H}/x`, `${DOMAIN}:443`), program(H, '/x', 'path'));
    assert.deepEqual(await route(`/vm/${H}/x`, 'VM.EXAMPLE.ORG.'), program(H, '/x', 'path'));
  });

  it('rejects malformed hashes with 400', async () => {
    for (const bad of [H.slice(0, 63), H + 'a', 'g' + H.slice(1), H.slice(0, 62) + '%41', 'zz']) {
      await rejectsWith(route(`/vm/${bad}/x`), BadRequestError, 'malformed program hash');
    }
  });

  it('a missing hash is 404, not 400', async () => {
    for (const path of ['/vm', '/vm/', '/vm//x', '/vm?x=1', '/vm/?x=/a']) {
      await rejectsWith(route(path), NotFoundError, 'no program hash given');
    }
  });

  it('serves node pages', async () => {
    assert.deepEqual(await route('/'), { kind: 'node', page: 'index', path: '/' });
    assert.deepEqual(await route('/?lang=en'), { kind: 'node', page: 'index', path: '/?lang=en' });
    assert.deepEqual(await route('/about'), { kind: 'node', page: 'about', path: '/about' });
    assert.deepEqual(await route('/about/team'), { kind: 'node', page: 'about', path: '/about/team' });
    assert.deepEqual(await route('/status'), { kind: 'node', page: 'status', path: '/status' });
    assert.deepEqual(await route('/status/?x'), { kind: 'node', page: 'status', path: '/status/?x' });
    assert.deepEqual(await route('/status?x'), { kind: 'node', page: 'status', path: '/status?x' });
    assert.deepEqual(await route('/v2/about/executions/list'), { kind: 'node', page: 'v2', path: '/v2/about/executions/list' });
    assert.deepEqual(await route('/control/allocations'), { kind: 'node', page: 'control', path: '/control/allocations' });
  });

  it('anything else on the bare domain is 404', async () => {
    for (const path of ['/aboutx', '/statuses', '/v2x', '/controls', '/vmx/' + H, '/VM/' + H, '/index.html', '/favicon.ico']) {
      await rejectsWith(route(path), NotFoundError, 'no such page');
    }
  });

  it('rejects traversal and bad targets with 400', async () => {
    const dot = 'invalid request target: dot-segment';
    for (const path of [
      `/vm/${H}/../x`,
      `/vm/${H}/..`,
      `/vm/${H}/..?q`,
      `/vm/${H}/a/../../x`,
      `/vm/${H}/%2e%2e/x`,
      `/vm/${H}/%2E%2e/x`,
      `/vm/${H}/.%2e/x`,
      `/vm/${H}/%2e./x`,
      `/vm/${H}/..%2fx`,
      `/vm/${H}/x%2F..%2Fy`,
      `/vm/${H}/..%5cx`,
      `/vm/${H}/..;/x`,
      `/vm/../vm/${H}/x`,
    ]) {
      await rejectsWith(route(path), BadRequestError, dot);
    }
    for (const path of [`/vm/${H}/a\\..\\x`, `/vm/${H}/a\u0000b`, `/vm/${H}/a\nb`, `/vm/${H}/\u007f`, '*', '', 'vm/x']) {
      await rejectsWith(route(path), BadRequestError, 'invalid request target');
    }
    // Dots that do not climb are fine, and so are dots and backslashes in the query.
    assert.deepEqual(await route(`/vm/${H}/...`), program(H, '/...', 'path'));
    assert.deepEqual(await route(`/vm/${H}/a..b`), program(H, '/a..b', 'path'));
    assert.deepEqual(await route(`/vm/${H}/x?p=../..&q=a\\b`), program(H, '/x?p=../..&q=a\\b', 'path'));
  });

  it('accepts absolute-form targets naming the same host, else 400', async () => {
    assert.deepEqual(await route(`http://${DOMAIN}/vm/${H}/x?y`), program(H, '/x?y', 'path'));
    assert.deepEqual(await route(`HTTPS://VM.example.org:443/about`), { kind: 'node', page: 'about', path: '/about' });
    assert.deepEqual(await route(`http://${DOMAIN}`), { kind: 'node', page: 'index', path: '/' });
    assert.deepEqual(await route(`http://${DOMAIN}?a`), { kind: 'node', page: 'index', path: '/?a' });
    await rejectsWith(route(`http://other.example/vm/${H}/x`), BadRequestError, 'request target does not match Host header');
    await rejectsWith(route(`http://user@${DOMAIN}/`), BadRequestError, 'invalid request target');
    await rejectsWith(route(`ftp://${DOMAIN}/`), BadRequestError, 'invalid request target');
    await rejectsWith(route(`http://${DOMAIN}/vm/${H}/../x`), BadRequestError, 'invalid request target: dot-segment');
  });
});

describe('rule 2: base32 label', () => {
  const { router, txt } = makeRouter();

  it('known vector: the hash of 64 zeros is 52 a', () => {
    assert.equal(hashToLabel('0'.repeat(64)), 'a'.repeat(52));
  });

  it('routes a label (lower and upper case) to its hash, path unchanged', async () => {
    const label = hashToLabel(H);
    assert.equal(label.length, 52);
    assert.deepEqual(await router.route({ host: `${label}.${DOMAIN}`, path: '/p?q=1' }), program(H, '/p?q=1', 'label'));
    assert.deepEqual(
      await router.route({ host: `${label.toUpperCase()}.${DOMAIN.toUpperCase()}:443`, path: '/' }),
      program(H, '/', 'label'),
    );
    assert.deepEqual(
      await router.route({ host: `${'a'.repeat(52)}.${DOMAIN}`, path: '/' }),
      program('0'.repeat(64), '/', 'label'),
    );
  });

  it('a 52-char label that is not base32 or has trailing bits is no program (404, no TXT)', async () => {
    for (const label of ['a'.repeat(51) + 'b', 'a'.repeat(51) + '1', '0'.repeat(52), 'a'.repeat(51), 'a'.repeat(53), 'www']) {
      const host = `${label}.${DOMAIN}`;
      await rejectsWith(router.route({ host, path: '/' }), NotFoundError, `no program for host ${host}`);
    }
    // A valid label one level deeper is not a program host either.
    const deep = `${hashToLabel(H)}.x.${DOMAIN}`;
    await rejectsWith(router.route({ host: deep, path: '/' }), NotFoundError, `no program for host ${deep}`);
    assert.deepEqual(txt.asked, [], 'no TXT lookups for our own subdomains');
  });

  it('labels still traverse-check the target', async () => {
    await rejectsWith(
      router.route({ host: `${hashToLabel(H)}.${DOMAIN}`, path: '/a/%2e%2e/b' }),
      BadRequestError,
      'invalid request target: dot-segment',
    );
  });
});

describe('rule 3: static routes', () => {
  it('routes an exact host match, path unchanged', async () => {
    const { router, txt } = makeRouter();
    assert.deepEqual(await router.route({ host: 'App.Example.com:8443', path: '/x?y' }), program(STATIC_HASH, '/x?y', 'static'));
    assert.deepEqual(txt.asked, []);
    await rejectsWith(router.route({ host: 'www.app.example.com', path: '/' }), NotFoundError, 'no program for host www.app.example.com');
  });

  it('a static route under our domain beats 404 but not a program label', async () => {
    const label = hashToLabel(H);
    const router = new Router({
      domain: DOMAIN,
      routes: [
        { host: `named.${DOMAIN}`, program: STATIC_HASH },
        { host: `${label}.${DOMAIN}`, program: STATIC_HASH },
      ],
    });
    assert.deepEqual(await router.route({ host: `named.${DOMAIN}`, path: '/' }), program(STATIC_HASH, '/', 'static'));
    assert.deepEqual(await router.route({ host: `${label}.${DOMAIN}`, path: '/' }), program(H, '/', 'label'));
  });

  it('refuses invalid or duplicate static routes at construction', () => {
    assert.throws(() => new Router({ domain: DOMAIN, routes: [{ host: 'a.test', program: 'nope' }] }), /64-hex/);
    assert.throws(
      () =>
        new Router({
          domain: DOMAIN,
          routes: [
            { host: 'a.test', program: H },
            { host: 'a.test', program: STATIC_HASH },
          ],
        }),
      /duplicate route/,
    );
  });
});

describe('rule 4: TXT', () => {
  it('routes by the _aleph-id value, path unchanged', async () => {
    const { router, txt } = makeRouter(new FakeTxt({ 'custom.example.net': TXT_HASH.toUpperCase() }));
    assert.deepEqual(await router.route({ host: 'custom.example.net', path: '/x' }), program(TXT_HASH, '/x', 'txt'));
    assert.deepEqual(txt.asked, ['custom.example.net']);
  });

  it('no record -> 404 for the host; a non-hash value -> invalid record; failures -> could not resolve', async () => {
    const { router } = makeRouter(
      new FakeTxt({
        'bad.example.net': 'hello',
        'broken.example.net': new Error('boom'),
        'sick.example.net': new NotFoundError('could not resolve _aleph-id record'),
      }),
    );
    await rejectsWith(router.route({ host: 'none.example.net', path: '/' }), NotFoundError, 'no program for host none.example.net');
    await rejectsWith(router.route({ host: 'bad.example.net', path: '/' }), NotFoundError, 'invalid _aleph-id record');
    await rejectsWith(router.route({ host: 'broken.example.net', path: '/' }), NotFoundError, 'could not resolve _aleph-id record');
    await rejectsWith(router.route({ host: 'sick.example.net', path: '/' }), NotFoundError, 'could not resolve _aleph-id record');
  });

  it('IP literals are not looked up and route nowhere unless they are the domain', async () => {
    const { router, txt } = makeRouter();
    await rejectsWith(router.route({ host: '192.0.2.1', path: '/' }), NotFoundError, 'no program for host 192.0.2.1');
    await rejectsWith(router.route({ host: '[::1]:443', path: '/' }), NotFoundError, 'no program for host ::1');
    assert.deepEqual(txt.asked, []);
    const byIp = new Router({ domain: '192.0.2.1' });
    assert.deepEqual(await byIp.route({ host: '192.0.2.1:8080', path: `/vm/${H}/x` }), program(H, '/x', 'path'));
  });

  it('without a TxtLookup, unknown hosts are 404', async () => {
    const router = new Router({ domain: DOMAIN });
    await rejectsWith(router.route({ host: 'custom.example.net', path: '/' }), NotFoundError, 'no program for host custom.example.net');
  });
});

describe('errors and metrics', () => {
  it('invalid Host headers are 400', async () => {
    const { router } = makeRouter();
    for (const host of ['', 'a b', 'evil.com/x', 'a@b', 'a%2fb', '-x.example', `${'a'.repeat(64)}.example`]) {
      await rejectsWith(router.route({ host, path: '/' }), BadRequestError, 'invalid Host header');
    }
  });

  it('counts aleph_edge_route_total by via', async () => {
    const { router, metrics } = makeRouter(new FakeTxt({ 'custom.example.net': TXT_HASH }));
    await router.route({ host: DOMAIN, path: `/vm/${H}/` });
    await router.route({ host: DOMAIN, path: '/' });
    await router.route({ host: `${hashToLabel(H)}.${DOMAIN}`, path: '/' });
    await router.route({ host: 'app.example.com', path: '/' });
    await router.route({ host: 'custom.example.net', path: '/' });
    await router.route({ host: 'nope.example.net', path: '/' }).catch(() => undefined);
    await router.route({ host: DOMAIN, path: '/vm/xyz/' }).catch(() => undefined);
    const counter = metrics.counter('aleph_edge_route_total', '');
    for (const via of ['path', 'node', 'label', 'static', 'txt', 'not_found', 'bad_request']) {
      assert.equal(counter.get({ via }), 1, via);
    }
    assert.equal(metrics.value('aleph_edge_route_total', { via: 'txt' }), 1);
  });
});

describe('routesTo (TLS on-demand policy)', () => {
  const { router } = makeRouter(
    new FakeTxt({ 'custom.example.net': TXT_HASH, 'bad.example.net': 'x', 'broken.example.net': new Error('x') }),
  );

  it('true for the domain and hosts that route by rules 2-4', async () => {
    assert.equal(await router.routesTo(DOMAIN), true);
    assert.equal(await router.routesTo(`${hashToLabel(H)}.${DOMAIN}`), true);
    assert.equal(await router.routesTo('app.example.com'), true);
    assert.equal(await router.routesTo('custom.example.net'), true);
  });

  it('false otherwise, never throwing', async () => {
    for (const host of [`www.${DOMAIN}`, 'nope.example.net', 'bad.example.net', 'broken.example.net', '192.0.2.1', '', 'a/b']) {
      assert.equal(await router.routesTo(host), false, host);
    }
  });
});

describe('routeNow (the edge path without a promise)', () => {
  const requests = [
    { host: DOMAIN, path: `/vm/${H}/x?y=1` },
    { host: DOMAIN, path: '/about/usage/system' },
    { host: `${hashToLabel(H)}.${DOMAIN}`, path: '/a' },
    { host: 'app.example.com', path: '/b' },
    { host: `www.${DOMAIN}`, path: '/' },
    { host: '192.0.2.1', path: '/' },
    { host: DOMAIN, path: '/vm/xyz/' },
    { host: 'a/b', path: '/' },
    { host: 'app.example.com', path: '/../etc' },
  ];

  it('answers as route() does for every rule but a TXT lookup, counting each request once', async () => {
    for (const request of requests) {
      const viaRoute = makeRouter();
      const viaNow = makeRouter();
      const expected = await viaRoute.router.route(request).then((route) => ({ route }), (error: Error) => ({ error: [error.constructor.name, error.message] }));
      let actual: { route: Route | undefined } | { error: string[] };
      try {
        actual = { route: viaNow.router.routeNow(request) };
      } catch (error) {
        actual = { error: [(error as Error).constructor.name, (error as Error).message] };
      }
      assert.deepEqual(actual, expected, `${request.host}${request.path}`);
      assert.equal(await viaNow.metrics.render(), await viaRoute.metrics.render(), `counted once: ${request.host}`);
      assert.deepEqual(viaNow.txt.asked, []);
    }
  });

  it('is undefined where only the TXT record can tell, and route() then counts it once', async () => {
    const { router, txt, metrics } = makeRouter(new FakeTxt({ 'custom.example.net': TXT_HASH }));
    assert.equal(router.routeNow({ host: 'custom.example.net', path: '/' }), undefined);
    assert.equal(router.routeNow({ host: 'none.example.net', path: '/' }), undefined);
    assert.deepEqual(txt.asked, []);
    assert.equal(metrics.value('aleph_edge_route_total', { via: 'txt' }), 0);
    assert.deepEqual(await router.route({ host: 'custom.example.net', path: '/q' }), program(TXT_HASH, '/q', 'txt'));
    await rejectsWith(router.route({ host: 'none.example.net', path: '/' }), NotFoundError, 'no program for host none.example.net');
    assert.equal(metrics.value('aleph_edge_route_total', { via: 'txt' }), 1);
    assert.equal(metrics.value('aleph_edge_route_total', { via: 'not_found' }), 1);
  });
});
