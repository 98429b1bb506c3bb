// The ACME issuer (tls.mode = "acme"): one order per certificate, validated with the
// challenge types of tls.challenges in order. When a type fails, the order is
// abandoned and a new one is placed with the next type (an invalid authorization
// cannot be retried within its order). '*.<domain>' names are ordered with the bare
// domain and validated by DNS-01 through the exec hook, one authorization at a time
// (both share the _acme-challenge TXT name).

import type acme from 'acme-client';
import { acmeLib } from './acme-lib.js';
import { CaUnavailableError, caGate, installCaGate } from './acme-gate.js';
import type { Logger } from '../common/index.js';
import type { ChallengeType } from '../config/index.js';
import type { Counter, MetricsRegistry } from '../metrics/index.js';
import { openAccount, issuerNameFor, type AcmeAccountOptions } from './acme-account.js';
import type { AlpnChallengeStore } from './alpn-challenges.js';
import type { ChallengeStore } from './challenges.js';
import type { DnsHook } from './dns-hook.js';
import type { Issuer } from './issuer.js';
import type { PemPair } from './pair.js';
import type { CertStorage } from './storage.js';

type AnyChallenge = ChallengeType | 'dns-01';

export interface AcmeIssuerOptions {
  directory: string;
  email: string;
  eab: { kid: string; hmacKey: string } | null;
  storage: CertStorage;
  challenges: ChallengeType[];
  http: ChallengeStore;
  alpn: AlpnChallengeStore;
  dns?: DnsHook;
  metrics: MetricsRegistry;
  log: Logger;
  backoff?: AcmeAccountOptions['backoff'];
  /** Pause of all orders after the CA itself failed (down, 5xx, 429): first wait, doubling, cap. */
  caBackoff?: { initialMs: number; maxMs: number };
}

export { CaUnavailableError } from './acme-gate.js';

interface OrderMetrics {
  started: Counter;
  succeeded: Counter;
  failed: Counter;
}

export class AcmeIssuer implements Issuer {
  readonly name: string;
  private account: Promise<acme.Client> | undefined;
  private readonly metrics: OrderMetrics;
  // CA-level backoff: after the CA failed to take an order, every order fails fast
  // until pausedUntil, then a single order probes it; success clears it.
  private caFailures = 0;
  private pausedUntil = 0;
  private probing = false;
  private readonly origin: string;

  constructor(private readonly options: AcmeIssuerOptions) {
    this.name = issuerNameFor(options.directory);
    this.origin = new URL(options.directory).origin;
    const m = options.metrics;
    this.metrics = {
      started: m.counter('aleph_edge_acme_orders_started_total', 'ACME orders placed, by challenge type'),
      succeeded: m.counter('aleph_edge_acme_orders_succeeded_total', 'ACME orders that produced a certificate, by challenge type'),
      failed: m.counter('aleph_edge_acme_orders_failed_total', 'ACME orders that failed, by challenge type'),
    };
  }

  /** The account client, registered on first use; a failed registration is retried next time. */
  private client(): Promise<acme.Client> {
    if (!this.account) {
      const { directory, email, eab, storage, log, backoff } = this.options;
      this.account = openAccount({ directory, email, eab, storage, issuerName: this.name, log, backoff });
      this.account.catch(() => (this.account = undefined));
    }
    return this.account;
  }

  async issue(name: string): Promise<PemPair> {
    if (name.startsWith('*.')) {
      const domain = name.slice(2);
      return this.order([name, domain], ['dns-01']);
    }
    return this.order([name], this.options.challenges);
  }

  private async order(names: string[], types: AnyChallenge[]): Promise<PemPair> {
    if (types.length === 0) throw new Error('no ACME challenge type configured');
    await installCaGate(acmeLib);
    // Fail fast without work; the gate refuses each request too, so orders under way stop at their next one.
    caGate.check(this.origin);
    if (this.caFailures > 0 && this.probing) throw new CaUnavailableError('the ACME directory failed; another order is probing it');
    const probe = this.caFailures > 0;
    if (probe) this.probing = true;
    try {
      return await caGate.runOrder(() => this.orderTypes(names, types));
    } finally {
      if (probe) this.probing = false;
    }
  }

  private caFailed(err: unknown): never {
    // Refused by the gate: the pause that refused it is already in force.
    if (err instanceof CaUnavailableError) throw err;
    // The CA's own trouble (unreachable, 5xx, 429) pauses every order; a refusal of
    // this name (any other 4xx) stays with the host's backoff.
    const status = caGate.orderStatus(this.origin);
    if (status >= 400 && status < 500 && status !== 429) throw err;
    // Orders that were already running when the pause began fail together: one step.
    if (Date.now() >= this.pausedUntil) {
      this.caFailures++;
      const { initialMs, maxMs } = this.options.caBackoff ?? { initialMs: 10_000, maxMs: 10 * 60_000 };
      this.pausedUntil = Date.now() + Math.min(maxMs, initialMs * 2 ** (this.caFailures - 1));
      caGate.pause(this.origin, this.pausedUntil, `failed (${describe(err)})`);
    }
    this.options.log.warn('acme directory failed; pausing orders', { directory: this.options.directory, error: describe(err), failures: this.caFailures, until: new Date(Math.max(this.pausedUntil, caGate.pausedUntil(this.origin))).toISOString() });
    throw new CaUnavailableError(`the ACME directory failed: ${describe(err)}`);
  }

  private async orderTypes(names: string[], types: AnyChallenge[]): Promise<PemPair> {
    const client = await this.client().catch((err) => this.caFailed(err));
    let lastError: Error | undefined;
    for (const type of types) {
      if (type === 'dns-01' && !this.options.dns) throw new Error(`${names[0]}: DNS-01 needs tls.wildcard.dns_hook`);
      const started = Date.now();
      this.metrics.started.inc({ challenge: type });
      try {
        const pem = await this.orderWith(client, names, type);
        this.metrics.succeeded.inc({ challenge: type });
        this.options.log.info('acme order valid', { names: names.join(','), challenge: type, ms: Date.now() - started });
        return pem;
      } catch (err) {
        lastError = err as Error;
        this.metrics.failed.inc({ challenge: type });
        this.options.log.warn('acme order failed', { names: names.join(','), challenge: type, error: describe(err), next: types[types.indexOf(type) + 1] });
        if (err instanceof CaUnavailableError) throw err; // the next type would ask the same CA
      }
    }
    throw lastError ?? new Error('acme order failed');
  }

  private async orderWith(client: acme.Client, names: string[], type: AnyChallenge): Promise<PemPair> {
    const t0 = performance.now();
    const phase = (name: string) => this.options.log.debug('acme order phase', { names: names[0], phase: name, ms: Math.round(performance.now() - t0) });
    let order: acme.Order;
    let authorizations: acme.Authorization[];
    try {
      order = await client.createOrder({ identifiers: names.map((value) => ({ type: 'dns', value })) });
      authorizations = await client.getAuthorizations(order);
    } catch (err) {
      this.caFailed(err);
    }
    this.caFailures = 0;
    phase('ordered');
    const solve = async (authz: acme.Authorization) => {
      if (authz.status === 'valid') return;
      const challenge = authz.challenges.find((c) => c.type === type);
      if (!challenge) throw new Error(`${authz.identifier.value}: the CA offers no ${type} challenge`);
      const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
      const cleanup = await this.present(type, authz, challenge, keyAuthorization);
      phase('presented');
      try {
        await client.completeChallenge(challenge);
        phase('completed');
        await client.waitForValidStatus(challenge);
        phase('valid');
      } finally {
        await cleanup().catch((err) => this.options.log.warn('acme challenge cleanup failed', { host: authz.identifier.value, error: describe(err) }));
      }
    };
    try {
      if (type === 'dns-01') for (const authz of authorizations) await solve(authz);
      else await Promise.all(authorizations.map(solve));
    } catch (err) {
      // Give back pending authorizations so they do not linger at the CA.
      await Promise.allSettled(authorizations.filter((a) => a.status === 'pending').map((a) => client.deactivateAuthorization(a)));
      throw err;
    }
    const lib = await acmeLib();
    const key = await lib.crypto.createPrivateEcdsaKey('P-256');
    const [, csr] = await lib.crypto.createCsr({ commonName: names[0]!, altNames: names }, key);
    phase('csr');
    const finalized = await client.finalizeOrder(order, csr);
    phase('finalized');
    const certPem = await client.getCertificate(finalized);
    phase('downloaded');
    return { certPem, keyPem: key.toString() };
  }

  /** Publishes a challenge answer; returns how to take it down. */
  private async present(type: AnyChallenge, authz: acme.Authorization, challenge: { token: string }, keyAuthorization: string): Promise<() => Promise<void>> {
    const host = authz.identifier.value;
    switch (type) {
      case 'http-01': {
        this.options.http.set(challenge.token, keyAuthorization);
        return async () => this.options.http.delete(challenge.token);
      }
      case 'tls-alpn-01': {
        // An ECDSA key: acme-client would make an RSA one, ~100 ms per challenge.
        const lib = await acmeLib();
        const alpnKey = await lib.crypto.createPrivateEcdsaKey('P-256');
        const [key, cert] = await lib.crypto.createAlpnCertificate(authz, keyAuthorization, alpnKey);
        this.options.alpn.set(host, cert.toString(), key.toString());
        return async () => this.options.alpn.delete(host);
      }
      case 'dns-01': {
        const fqdn = `_acme-challenge.${host}`;
        await this.options.dns!.run('present', fqdn, keyAuthorization);
        return () => this.options.dns!.run('cleanup', fqdn, keyAuthorization);
      }
    }
  }
}

function describe(err: unknown): string {
  const e = err as Error & { response?: { data?: { detail?: string } } };
  return e.response?.data?.detail ?? e.message ?? String(err);
}
