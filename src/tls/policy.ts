// The on-demand issuance policy (tls.on_demand, tls.ask): a certificate is ordered
// (acme) or minted (internal CA) at handshake time only for a host that reaches a
// program that exists (the node's injected answer: routing + program source) or that
// the operator's `ask` URL approves with a 2xx. Hosts a configured wildcard covers
// never get their own order, and on_demand = false orders nothing at handshake time.
// The manager asks this before taking an issue_rate token, so refused names never
// drain the rate limit.

import { LRUCache } from 'lru-cache';
import { fetch } from 'undici';
import type { Logger } from '../common/index.js';
import type { IssuancePolicy } from './types.js';

export interface OnDemandPolicyOptions {
  onDemand: boolean;
  /** The node's answer: does this host reach a program that exists (or the node itself)? */
  routesTo: (host: string) => Promise<boolean>;
  /** GET <ask>?domain=<host>; 2xx allows. '' = no ask URL. */
  ask: string;
  /** Bare domains with a wildcard certificate: '<label>.<domain>' and '<domain>' are its. */
  wildcardDomains: string[];
  log: Logger;
  askTimeoutMs?: number;
  /** How long an ask answer is remembered (default 60 s); bounds the calls a flood can cause. */
  askCacheMs?: number;
}

export type Decision = 'routes' | 'ask' | 'wildcard' | 'off' | 'denied';

export class OnDemandPolicy implements IssuancePolicy {
  private readonly askCache: LRUCache<string, boolean>;

  constructor(private readonly options: OnDemandPolicyOptions) {
    this.askCache = new LRUCache({ max: 10_000, ttl: options.askCacheMs ?? 60_000 });
  }

  /** True when the host is served by a configured wildcard certificate. */
  coveredByWildcard(host: string): boolean {
    for (const domain of this.options.wildcardDomains) {
      if (host === domain) return true;
      if (host.endsWith(`.${domain}`) && !host.slice(0, -domain.length - 1).includes('.')) return true;
    }
    return false;
  }

  async allow(host: string): Promise<boolean> {
    const decision = await this.decide(host);
    return decision === 'routes' || decision === 'ask';
  }

  async decide(host: string): Promise<Decision> {
    if (this.coveredByWildcard(host)) return 'wildcard';
    if (!this.options.onDemand) return 'off';
    if (await this.options.routesTo(host).catch(() => false)) return 'routes';
    if (this.options.ask && (await this.askUrl(host))) return 'ask';
    return 'denied';
  }

  private async askUrl(host: string): Promise<boolean> {
    const cached = this.askCache.get(host);
    if (cached !== undefined) return cached;
    const url = new URL(this.options.ask);
    url.searchParams.set('domain', host);
    let ok = false;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(this.options.askTimeoutMs ?? 5_000), redirect: 'manual' });
      ok = res.status >= 200 && res.status < 300;
      await res.body?.cancel().catch(() => undefined);
    } catch (err) {
      this.options.log.warn('tls ask url failed; refusing', { host, error: (err as Error).message });
    }
    this.askCache.set(host, ok);
    return ok;
  }
}
