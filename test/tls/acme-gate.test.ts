// The ACME gate: once a CA answered 429 with Retry-After, no request reaches it
// before that time, from any issuer in the process, while acme-client waits to
// retry the refused request. Against a real HTTPS server that answers 429 to
// everything (Pebble's API certificate), with real acme-client issuers.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import type net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/common/index.js';
import { MetricsRegistry } from '../../src/metrics/registry.js';
import { setAcmeHttpRetry, trustDirectoryCa } from '../../src/tls/acme-account.js';
import { caGate } from '../../src/tls/acme-gate.js';
import { AcmeIssuer, CaUnavailableError } from '../../src/tls/acme-issuer.js';
import { AlpnChallengeStore } from '../../src/tls/alpn-challenges.js';
import { ChallengeStore } from '../../src/tls/challenges.js';
import { CertStorage } from '../../src/tls/storage.js';
import { usePebble, type Pebble, type TempDir } from './acme-harness.js';

const RETRY_AFTER_S = 3;

describe('ACME gate: nothing reaches a CA inside its Retry-After', () => {
  let pebble: Pebble;
  let work: TempDir;
  usePebble('aleph-edge-acme-gate-', {}, (env) => ({ pebble, work } = env));

  let server: https.Server;
  let directory: string;
  const arrivals: Array<{ at: number; what: string }> = [];
  let firstRefusal = 0;

  before(async () => {
    const key = await readFile(path.join(pebble.dir, 'api.key'), 'utf8');
    server = https.createServer({ cert: pebble.apiCert, key }, (req, res) => {
      const at = performance.now();
      arrivals.push({ at, what: `${req.method} ${req.url}` });
      firstRefusal ||= at;
      req.resume();
      res.writeHead(429, { 'content-type': 'application/problem+json', 'retry-after': String(RETRY_AFTER_S) });
      res.end(JSON.stringify({ type: 'urn:ietf:params:acme:error:rateLimited', detail: 'slow down' }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    directory = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}/dir`;
    await trustDirectoryCa(pebble.apiCertPath);
    // acme-client retries a 429 once, after the Retry-After it was told.
    await setAcmeHttpRetry(1, 0);
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const issuer = (name: string) => new AcmeIssuer({
    directory,
    email: 'ops@edge.test',
    eab: null,
    storage: new CertStorage(path.join(work.dir, name)),
    challenges: ['http-01'],
    http: new ChallengeStore(),
    alpn: new AlpnChallengeStore(),
    metrics: new MetricsRegistry(),
    log: createLogger('test'),
  });

  it('a second issuer is refused without a request while the first waits out the 429; the retry comes after Retry-After', async () => {
    const first = issuer('first');
    const second = issuer('second');
    const firstOrder = first.issue('a.edge.test');
    firstOrder.catch(() => undefined);
    const deadline = performance.now() + 10_000;
    while (arrivals.length === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(arrivals.length, 1, 'the first order reached the CA');
    // Once the 429 is noted, acme-client waits Retry-After to retry; a second issuer (another host, its own account) starts.
    const origin = new URL(directory).origin;
    while (caGate.pausedUntil(origin) === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    let firstSettled = false;
    void firstOrder.finally(() => { firstSettled = true; }).catch(() => undefined);
    await assert.rejects(second.issue('b.edge.test'), CaUnavailableError);
    assert.equal(firstSettled, false, 'refused at once: while the first order still waits out its Retry-After');
    await assert.rejects(firstOrder);
    const early = arrivals.filter((a) => a.at > firstRefusal && a.at < firstRefusal + RETRY_AFTER_S * 1000);
    assert.deepEqual(early.map((a) => a.what), [], `requests inside Retry-After: ${arrivals.map((a) => `${Math.round(a.at - firstRefusal)} ms ${a.what}`).join(', ')}`);
    // The one retry of the first request, after the wait it was told.
    assert.equal(arrivals.length, 2, arrivals.map((a) => a.what).join(', '));
  });

  it('after the retry was refused too, an order of any issuer is refused without a request', async () => {
    const count = arrivals.length;
    const third = issuer('third');
    await assert.rejects(third.issue('c.edge.test'), CaUnavailableError);
    assert.equal(arrivals.length, count);
  });
});
