// `_aleph-id.<host>` TXT lookups through node:dns, with an LRU cache of positive
// and negative answers, one query in flight per host, and a hard timeout.
//
// TTLs: Node's resolver does not expose TXT record TTLs (resolveTxt and
// resolveAny return only the strings; `{ttl: true}` exists for A/AAAA only), and
// Node's c-ares query cache is off. Rather than hand-roll a DNS client (and lose
// resolv.conf handling, TCP fallback, retries), positive answers are cached for a
// fixed min(maxTtlMs, 5 min): a changed record is picked up within 5 minutes.
//
// Failures (SERVFAIL, REFUSED, timeouts, unreachable server) are not answers: they
// are cached only briefly (min(negativeTtlMs, 5 s)) so a burst of requests does not
// hammer a sick resolver, and an operator fixing DNS does not wait a minute.
// They surface as NotFoundError('could not resolve _aleph-id record').

import { promises as dns } from 'node:dns';
import { LRUCache } from 'lru-cache';
import { createLogger, normalizeHash, NotFoundError } from '../common/index.js';
import type { Clock } from '../common/index.js';
import type { RoutingSettings } from '../config/index.js';
import type { Counter, MetricsRegistry } from '../metrics/index.js';
import type { TxtLookup } from './types.js';

const DEFAULT_POSITIVE_TTL_CAP_MS = 5 * 60_000;
const DEFAULT_ERROR_TTL_CAP_MS = 5_000;
const RECORD_PREFIX = '_aleph-id.';
const MAX_DNS_NAME = 253;

/** What one lookup concluded. `timeout` is an `error` kept apart for metrics. */
type Answer =
  | { readonly kind: 'found'; readonly hash: string }
  | { readonly kind: 'absent' | 'invalid' | 'error' | 'timeout' };

const ABSENT: Answer = Object.freeze({ kind: 'absent' });
const INVALID: Answer = Object.freeze({ kind: 'invalid' });
const ERROR: Answer = Object.freeze({ kind: 'error' });
const TIMEOUT: Answer = Object.freeze({ kind: 'timeout' });

/** Result label values of aleph_edge_txt_lookups_total. */
export type TxtLookupResult = Answer['kind'] | 'cached' | 'shared';

export interface DnsTxtLookupOptions {
  metrics?: MetricsRegistry;
  /** How long a found hash is trusted. Default min(maxTtlMs, 5 min); see the file comment. */
  positiveTtlMs?: number;
  /** How long a resolution failure is remembered. Default min(negativeTtlMs, 5 s). */
  errorTtlMs?: number;
  /** What the cache's TTLs are measured on; tests move a fake one by hand. */
  clock?: Clock;
}

/** Several TXT records: the first whose concatenated strings are a 64-hex hash wins. */
function classify(records: string[][]): Answer {
  if (records.length === 0) return ABSENT;
  for (const chunks of records) {
    const hash = normalizeHash(chunks.join('').trim());
    if (hash !== undefined) return { kind: 'found', hash };
  }
  return INVALID;
}

function classifyError(err: unknown): Answer {
  const code = (err as { code?: unknown } | null)?.code;
  // NXDOMAIN and "name exists, no TXT": authoritative negative answers.
  if (code === dns.NOTFOUND || code === dns.NODATA) return ABSENT;
  if (code === dns.TIMEOUT) return TIMEOUT;
  return ERROR;
}

export class DnsTxtLookup implements TxtLookup {
  private readonly resolver: dns.Resolver;
  private readonly cache: LRUCache<string, Answer>;
  private readonly inflight = new Map<string, Promise<Answer>>();
  private readonly timeoutMs: number;
  private readonly positiveTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly errorTtlMs: number;
  private readonly counter: Counter | undefined;
  private readonly log = createLogger('routing.txt');

  constructor(settings: RoutingSettings, options: DnsTxtLookupOptions = {}) {
    this.timeoutMs = Math.max(1, settings.lookupTimeoutMs);
    // Two tries; c-ares doubles the per-try timeout, so t + 2t fills the budget.
    // The race in query() is the actual bound, whatever c-ares does.
    this.resolver = new dns.Resolver({ timeout: Math.max(1, Math.floor(this.timeoutMs / 3)), tries: 2 });
    if (settings.dnsServers.length > 0) this.resolver.setServers(settings.dnsServers);

    this.positiveTtlMs = options.positiveTtlMs ?? Math.min(settings.maxTtlMs, DEFAULT_POSITIVE_TTL_CAP_MS);
    this.negativeTtlMs = settings.negativeTtlMs;
    this.errorTtlMs = options.errorTtlMs ?? Math.min(settings.negativeTtlMs, DEFAULT_ERROR_TTL_CAP_MS);
    const clock = options.clock;
    this.cache = new LRUCache<string, Answer>({
      max: Math.max(1, settings.txtCacheSize),
      // ttlResolution 0: lru-cache would otherwise reuse one reading for a millisecond of real time.
      ...(clock ? { perf: { now: () => clock.now() }, ttlResolution: 0 } : {}),
    });
    this.counter = options.metrics?.counter(
      'aleph_edge_txt_lookups_total',
      'TXT _aleph-id lookups by result (cached and shared made no query)',
    );
  }

  /**
   * The hash in `_aleph-id.<host>` (host as returned by parseHost), or undefined
   * when there is no such record. Rejects with NotFoundError when records exist but
   * none holds a hash ('invalid _aleph-id record') or DNS failed ('could not
   * resolve _aleph-id record'): both mean 404, with a reason worth showing.
   */
  async lookup(host: string): Promise<string | undefined> {
    const cached = this.cache.get(host);
    if (cached !== undefined) {
      this.count('cached');
      return settle(cached);
    }
    const pending = this.inflight.get(host);
    if (pending !== undefined) {
      this.count('shared');
      return settle(await pending);
    }
    return settle(await this.start(host));
  }

  /** Forgets every cached answer (queries in flight still complete). */
  clear(): void {
    this.cache.clear();
  }

  private start(host: string): Promise<Answer> {
    const name = RECORD_PREFIX + host;
    const promise =
      name.length > MAX_DNS_NAME ? Promise.resolve(ABSENT) : this.query(name);
    const done = promise.then((answer) => {
      this.inflight.delete(host);
      this.count(answer.kind);
      const ttl = this.ttlFor(answer);
      // lru-cache reads ttl 0 as "never expires": skip caching instead.
      if (ttl > 0) this.cache.set(host, answer, { ttl });
      if (answer.kind === 'error' || answer.kind === 'timeout') {
        this.log.debug('TXT lookup failed', { name, result: answer.kind });
      }
      return answer;
    });
    this.inflight.set(host, done);
    return done;
  }

  /** Never rejects: every outcome is an Answer. Bounded by timeoutMs. */
  private query(name: string): Promise<Answer> {
    return new Promise<Answer>((resolve) => {
      const timer = setTimeout(() => resolve(TIMEOUT), this.timeoutMs);
      timer.unref();
      this.resolver.resolveTxt(name).then(
        (records) => {
          clearTimeout(timer);
          resolve(classify(records));
        },
        (err: unknown) => {
          clearTimeout(timer);
          resolve(classifyError(err));
        },
      );
    });
  }

  private ttlFor(answer: Answer): number {
    switch (answer.kind) {
      case 'found':
        return this.positiveTtlMs;
      case 'absent':
      case 'invalid':
        return this.negativeTtlMs;
      default:
        return this.errorTtlMs;
    }
  }

  private count(result: TxtLookupResult): void {
    this.counter?.inc(RESULT_LABELS[result]);
  }
}

// Label objects built once instead of per lookup.
const RESULT_LABELS: Record<TxtLookupResult, { result: string }> = {
  found: { result: 'found' },
  absent: { result: 'absent' },
  invalid: { result: 'invalid' },
  error: { result: 'error' },
  timeout: { result: 'timeout' },
  cached: { result: 'cached' },
  shared: { result: 'shared' },
};

function settle(answer: Answer): string | undefined {
  switch (answer.kind) {
    case 'found':
      return answer.hash;
    case 'absent':
      return undefined;
    case 'invalid':
      throw new NotFoundError('invalid _aleph-id record');
    default:
      throw new NotFoundError('could not resolve _aleph-id record');
  }
}
