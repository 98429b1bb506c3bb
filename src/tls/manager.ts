// The certificate manager behind every TLS handshake. For an SNI name:
//   memory cache -> storage -> (policy allows? -> issuer, under a per-host lock) -> storage -> cache
// One lookup/issuance runs per host at a time; concurrent handshakes for that host
// wait on it. A certificate with a third of its lifetime left is still served while
// a replacement is ordered in the background. This is the issuing modes (internal,
// acme); files mode has its own resolver (files-resolver.ts). One record per host
// keeps its failures: the backoff and the renewal state the status API shows.

import type { SecureContext } from 'node:tls';
import { LRUCache } from 'lru-cache';
import { createLogger, type Logger } from '../common/index.js';
import type { TlsMode } from '../config/index.js';
import type { Counter, MetricsRegistry } from '../metrics/index.js';
import { AlpnChallengeStore } from './alpn-challenges.js';
import { CertCache, type CachedCert } from './cache.js';
import { ChallengeStore } from './challenges.js';
import type { OcspStapler } from './ocsp.js';
import { normalizeServerName, wildcardFor } from './hostname.js';
import type { Issuer } from './issuer.js';
import type { LockOptions } from './lock.js';
import { renewAt, secureContextFor, type PemPair } from './pair.js';
import type { CertStorage, StoredCert } from './storage.js';
import { LookupTimer, type LookupResult } from './lookup-timer.js';
import type { CertInfo, CertificateManager, IssuancePolicy } from './types.js';

export interface BackoffOptions {
  /** First wait after a failed issuance for a host; doubles per failure. */
  initialMs: number;
  maxMs: number;
}

export interface IssuingOptions {
  mode: Exclude<TlsMode, 'files'>;
  metrics: MetricsRegistry;
  /** Challenge stores shared with the issuer (made here when absent). */
  challenges?: ChallengeStore;
  alpnChallenges?: AlpnChallengeStore;
  cacheSize: number;
  log?: Logger;
  /** Clock (epoch ms) for expiry and renewal decisions; tests move it. */
  now?: () => number;
  storage: CertStorage;
  issuer: Issuer;
  policy: IssuancePolicy;
  /** Serve a stored '*.parent' certificate for a host before issuing one for it. */
  wildcardLookup?: boolean;
  /** Bare domains with a wildcard certificate: the domain itself is served from '*.<domain>' too. */
  wildcardDomains?: string[];
  /** Gates new on-demand orders (tls.issue_rate); renewals are not gated. */
  rateLimit?: { take(): boolean };
  /** How long a handshake waits for an order before failing (the order goes on in the background). */
  issueWaitMs?: number;
  /** Staples OCSP responses for certificates that name a responder. */
  ocsp?: OcspStapler;
  backoff?: BackoffOptions;
  lock?: LockOptions;
}

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 10_000, maxMs: 10 * 60_000 };
const DEFAULT_LOCK: LockOptions = { timeoutMs: 30_000 };
const MAX_BACKOFF_ENTRIES = 10_000;
const DEFAULT_ISSUE_WAIT_MS = 8_000;

/** Renewal state of one certificate name, for the status API. */
export interface RenewalState {
  failures: number;
  lastError?: string;
  lastAttempt?: string;
  nextAttempt?: string;
}

/** A host's failed orders (and refused renewals): the backoff, and what the status API shows. */
interface Failure {
  count: number;
  /** No new order before this (epoch ms). */
  until: number;
  /** Set by a failed order; a policy refusal only backs off. */
  lastError?: string;
  lastAttempt?: number;
}

interface Metrics {
  issued: Counter;
  failures: Counter;
  denials: Counter;
  rateLimited: Counter;
}

export class IssuingManager implements CertificateManager {
  /** Pending HTTP-01 challenges; the ACME issuer fills it. */
  readonly challenges: ChallengeStore;
  /** Pending TLS-ALPN-01 validation certificates; the ACME issuer fills it. */
  readonly alpnChallenges: AlpnChallengeStore;
  /**
   * The TLS-ALPN-01 validation context for a host while a challenge is pending,
   * served to 'acme-tls/1' clients only. Defined in acme mode only, so the listener
   * negotiates ALPN as before in the other modes.
   */
  readonly alpnChallenge?: (servername: string) => Promise<SecureContext | undefined>;
  /** OCSP staple from the cache (set when an OcspStapler is configured). */
  readonly ocspResponse?: (certificate: Buffer, issuer: Buffer | null) => Promise<Buffer | undefined>;
  private readonly closers: Array<() => Promise<void>> = [];
  readonly mode: Exclude<TlsMode, 'files'>;

  private readonly cache: CertCache;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly metrics: Metrics;
  private readonly timer: LookupTimer;
  private readonly storage: CertStorage;
  private readonly issuer: Issuer;
  private readonly policy: IssuancePolicy;
  private readonly options: IssuingOptions;
  private readonly backoff: BackoffOptions;
  private readonly failures = new LRUCache<string, Failure>({ max: MAX_BACKOFF_ENTRIES });
  private readonly lookups = new Map<string, { promise: Promise<CachedCert | undefined>; outcome: { result: LookupResult } }>();
  private readonly renewals = new Map<string, Promise<void>>();

  constructor(options: IssuingOptions) {
    this.mode = options.mode;
    this.challenges = options.challenges ?? new ChallengeStore();
    this.alpnChallenges = options.alpnChallenges ?? new AlpnChallengeStore();
    if (options.ocsp) {
      const ocsp = options.ocsp;
      this.ocspResponse = async (certificate, issuer) => ocsp.get(certificate, issuer);
    }
    if (options.mode === 'acme') {
      this.alpnChallenge = async (servername) => {
        const host = normalizeServerName(servername);
        return host ? this.alpnChallenges.get(host) : undefined;
      };
    }
    this.cache = new CertCache(options.cacheSize);
    this.log = options.log ?? createLogger('tls');
    this.now = options.now ?? Date.now;
    this.options = options;
    ({ storage: this.storage, issuer: this.issuer, policy: this.policy } = options);
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.timer = new LookupTimer(options.metrics);
    const registry = options.metrics;
    this.metrics = {
      issued: registry.counter('aleph_edge_certs_issued_total', 'Certificates issued, by issuer'),
      failures: registry.counter('aleph_edge_cert_issue_failures_total', 'Failed certificate issuances, by issuer'),
      denials: registry.counter('aleph_edge_cert_policy_denials_total', 'On-demand certificates refused by the issuance policy'),
      rateLimited: registry.counter('aleph_edge_cert_rate_limited_total', 'On-demand orders refused by tls.issue_rate'),
    };
    registry
      .gauge('aleph_edge_certs_cached', 'Certificates held in the in-memory cache (files mode: configured names)')
      .collect(() => [[{}, this.cache.size]]);
  }

  /** Never throws: any failure means "no certificate", which fails that handshake only. */
  async secureContext(servername: string): Promise<SecureContext | undefined> {
    return (await this.timer.time((outcome) => this.find(servername, outcome)))?.context;
  }

  /** The PEM pair behind secureContext(), for worker processes that build their own contexts. */
  async certificate(servername: string): Promise<PemPair | undefined> {
    return (await this.timer.time((outcome) => this.find(servername, outcome)))?.pem;
  }

  private async find(servername: string, outcome: { result: LookupResult }): Promise<CachedCert | undefined> {
    const host = normalizeServerName(servername);
    if (!host || !this.storage.accepts(host)) {
      this.log.debug('server name refused', { servername: String(servername).slice(0, 300) });
      return undefined;
    }
    try {
      const cached = this.cache.get(host);
      if (cached) {
        if (this.now() < cached.notAfter) {
          this.maybeRenew(host, cached);
          return cached;
        }
        this.cache.delete(host);
      }
      outcome.result = 'storage';
      return await this.bounded(host, this.lookup(host, outcome));
    } catch (err) {
      this.log.error('certificate lookup failed', { host, error: (err as Error).message });
      return undefined;
    }
  }

  async httpChallenge(token: string): Promise<string | undefined> {
    return this.challenges.get(token);
  }

  /** Cached and stored certificates, sorted by host. */
  async list(): Promise<CertInfo[]> {
    const byKey = new Map<string, CertInfo>();
    for (const meta of await this.storage.list()) {
      byKey.set(`${meta.source}|${meta.host}`, {
        host: meta.host,
        source: meta.source,
        notBefore: meta.notBefore,
        notAfter: meta.notAfter,
        issuer: meta.issuerName,
      });
    }
    for (const entry of this.cache.values()) byKey.set(`${entry.info.source}|${entry.info.host}`, entry.info);
    for (const [key, info] of byKey) {
      const state = this.renewalState(info.host);
      if (state) byKey.set(key, { ...info, renewal: state });
    }
    return [...byKey.values()].sort((a, b) => a.host.localeCompare(b.host) || a.source.localeCompare(b.source));
  }

  /** Runs fn on close() (background schedulers). */
  onClose(fn: () => Promise<void>): void {
    this.closers.push(fn);
  }

  /**
   * Stops background work (renewal scheduler). Running orders are waited for up to
   * graceMs only: a renewal stuck on an unreachable CA must not hold up a drain.
   */
  async close(graceMs = 1_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([(async () => {
      await Promise.allSettled(this.closers.splice(0).map((fn) => fn()));
      await this.idle();
    })(), grace]);
    clearTimeout(timer);
  }

  /** Resolves when no background renewal is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.renewals.size > 0) await Promise.allSettled([...this.renewals.values()]);
  }

  /** A handshake waits for an order at most issueWaitMs; the order itself goes on and is cached for the next one. */
  private async bounded(host: string, flight: Promise<CachedCert | undefined>): Promise<CachedCert | undefined> {
    const waitMs = this.options.issueWaitMs ?? DEFAULT_ISSUE_WAIT_MS;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        this.log.warn('handshake gave up waiting for the certificate order; it continues in the background', { host, wait_ms: waitMs });
        resolve(undefined);
      }, waitMs);
      timer.unref();
    });
    try {
      return await Promise.race([flight, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  // Single flight per host: the first handshake does the work, the others share its promise.
  private lookup(host: string, outcome: { result: LookupResult }): Promise<CachedCert | undefined> {
    let flight = this.lookups.get(host);
    if (!flight) {
      const shared = { result: 'storage' as LookupResult };
      flight = { promise: this.lookupOnce(host, shared).finally(() => this.lookups.delete(host)), outcome: shared };
      this.lookups.set(host, flight);
    }
    const { promise, outcome: shared } = flight;
    return promise.then((found) => {
      outcome.result = shared.result;
      return found;
    });
  }

  private async lookupOnce(host: string, outcome: { result: LookupResult }): Promise<CachedCert | undefined> {
    const { policy, options: { rateLimit } } = this;
    const stored = await this.loadUsable(host);
    if (stored) return stored;
    if (this.inBackoff(host)) return undefined;
    if (!(await policy.allow(host))) {
      this.metrics.denials.inc();
      // debug: a flood of unknown names must not flood the log; the denials counter shows it.
      this.log.debug('certificate refused by policy', { host });
      return undefined;
    }
    if (rateLimit && !rateLimit.take()) {
      this.metrics.rateLimited.inc();
      this.log.warn('certificate order refused by tls.issue_rate', { host });
      return undefined;
    }
    outcome.result = 'issued';
    try {
      return await this.issueAndStore(host);
    } catch {
      return undefined; // logged and backed off in issueAndStore
    }
  }

  /**
   * Orders (or loads, when another process already did) the certificate for a name
   * without asking the policy: pre-configured names such as '*.<domain>'. Throws on failure.
   */
  async obtain(name: string): Promise<void> {
    const stored = await this.storage.load(this.issuer.name, name);
    if (stored && this.now() < renewAt(stored.pair.notBefore, stored.pair.notAfter)) return;
    await this.issueAndStore(name);
  }

  /**
   * Background renewal of a stored name (the scheduler calls it). Asks the policy
   * for on-demand hosts unless told otherwise; resolves false when refused.
   */
  async renew(name: string, options: { askPolicy: boolean }): Promise<boolean> {
    const running = this.renewals.get(name);
    if (running) {
      await running;
      return true;
    }
    if (options.askPolicy && !(await this.policy.allow(name))) {
      this.metrics.denials.inc();
      return false;
    }
    const renewal = this.issueAndStore(name).then(() => undefined);
    this.renewals.set(name, renewal.catch(() => undefined).finally(() => this.renewals.delete(name)));
    await renewal;
    return true;
  }

  /** The pending TLS-ALPN-01 validation certificate as PEM, for worker processes (IPC). */
  alpnChallengeCertificate(servername: string): PemPair | undefined {
    const host = normalizeServerName(servername);
    return host ? this.alpnChallenges.pem(host) : undefined;
  }

  /** Renewal state of names whose last order failed. */
  renewalState(name: string): RenewalState | undefined {
    const failure = this.failures.peek(name);
    if (failure?.lastError === undefined) return undefined;
    return {
      failures: failure.count,
      lastError: failure.lastError,
      lastAttempt: failure.lastAttempt === undefined ? undefined : new Date(failure.lastAttempt).toISOString(),
      nextAttempt: new Date(failure.until).toISOString(),
    };
  }

  /** A stored, unexpired certificate for host (or its wildcard), now cached. */
  private async loadUsable(host: string): Promise<CachedCert | undefined> {
    const { storage, issuer, options: { wildcardLookup, wildcardDomains } } = this;
    const names = [host];
    const wildcard = wildcardDomains?.includes(host) ? `*.${host}` : wildcardLookup ? wildcardFor(host) : undefined;
    if (wildcard) names.push(wildcard);
    for (const name of names) {
      const stored = await storage.load(issuer.name, name);
      if (!stored) continue;
      if (this.now() >= stored.pair.notAfter.getTime()) {
        this.log.info('stored certificate expired', { host: name, not_after: stored.meta.notAfter });
        continue;
      }
      const entry = this.remember(host, stored);
      this.maybeRenew(host, entry);
      return entry;
    }
    return undefined;
  }

  private async issueAndStore(host: string): Promise<CachedCert> {
    const { storage, issuer } = this;
    const started = this.now();
    try {
      const held = await storage.lock(issuer.name, host, this.options.lock ?? DEFAULT_LOCK);
      try {
        // Another process sharing the folder may have issued while we waited for the lock.
        const fresh = await storage.load(issuer.name, host);
        if (fresh && this.now() < renewAt(fresh.pair.notBefore, fresh.pair.notAfter)) return this.remember(host, fresh);
        const pem = await issuer.issue(host);
        const stored = await storage.save(issuer.name, host, pem);
        this.metrics.issued.inc({ issuer: issuer.name });
        this.failures.delete(host);
        this.log.info('certificate issued', { host, issuer: issuer.name, not_after: stored.meta.notAfter, ms: this.now() - started });
        // Hosts served from a renewed wildcard pick up the new one on their next handshake.
        if (host.startsWith('*.')) this.cache.dropWhere((entry) => entry.info.host === host);
        return this.remember(host, stored);
      } finally {
        await held.release();
      }
    } catch (err) {
      this.metrics.failures.inc({ issuer: issuer.name });
      const waitMs = this.recordFailure(host, { lastError: (err as Error).message.slice(0, 300), lastAttempt: started });
      this.log.warn('certificate issuance failed', { host, issuer: issuer.name, error: (err as Error).message, retry_in_ms: waitMs });
      throw err;
    }
  }

  private remember(host: string, stored: StoredCert): CachedCert {
    const { pair, meta } = stored;
    const entry: CachedCert = {
      context: secureContextFor(pair),
      pem: { certPem: pair.certPem, keyPem: pair.keyPem },
      info: { host: meta.host, source: meta.source, notBefore: meta.notBefore, notAfter: meta.notAfter, issuer: meta.issuerName },
      notAfter: pair.notAfter.getTime(),
      renewAt: renewAt(pair.notBefore, pair.notAfter),
      fingerprint256: pair.fingerprint256,
    };
    this.cache.set(host, entry);
    return entry;
  }

  /** Orders a replacement in the background once a third of the lifetime remains; the current cert keeps being served. */
  private maybeRenew(host: string, entry: CachedCert): void {
    if (this.now() < entry.renewAt) return;
    // A wildcard found for this host is renewed under its own name by the issuer that orders wildcards.
    if (entry.info.host !== host) return;
    if (this.renewals.has(host) || this.inBackoff(host)) return;
    const renewal = (async () => {
      if (!(await this.policy.allow(host))) {
        this.metrics.denials.inc();
        this.recordFailure(host); // do not ask again on every handshake
        this.log.info('renewal refused by policy; serving the current certificate until it expires', { host, not_after: entry.info.notAfter });
        return;
      }
      await this.issueAndStore(host);
    })()
      .catch(() => undefined) // logged in issueAndStore
      .finally(() => this.renewals.delete(host));
    this.renewals.set(host, renewal);
  }

  /** True while a host's last failure asks to wait before ordering again. */
  inBackoff(host: string): boolean {
    const failure = this.failures.get(host);
    return failure !== undefined && this.now() < failure.until;
  }

  private recordFailure(host: string, attempt?: { lastError: string; lastAttempt: number }): number {
    const previous = this.failures.get(host);
    const count = (previous?.count ?? 0) + 1;
    const waitMs = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** (count - 1));
    this.failures.set(host, { ...previous, ...attempt, count, until: this.now() + waitMs });
    return waitMs;
  }
}
