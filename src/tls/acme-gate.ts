// The one place that decides whether an ACME server may be called. Every request
// acme-client makes (directory, nonce, account, order, authorization, polling,
// finalize, download, and acme-client's own retries) passes through its single
// axios instance, so the gate sits there: a request to an origin that is paused
// (a 429/503 Retry-After, or the issuer's backoff after the CA failed) is refused
// before it leaves, and every answer is noted before acme-client's retry logic sees
// it. Gating only where an order starts let orders already under way, their nonce
// fetches and acme-client's retries reach a CA inside its Retry-After.

import { AsyncLocalStorage } from 'node:async_hooks';
import type { AcmeLib } from './acme-lib.js';

/** The CA may not be called now (paused after it failed or asked us to wait). */
export class CaUnavailableError extends Error {
  override readonly name = 'CaUnavailableError';
}

interface OriginState {
  /** No request before this (epoch ms). */
  until: number;
  /** Why: shown in the error of a refused request. */
  reason: string;
  /** Status of the last answer (acme-client's errors do not carry it). */
  lastStatus: number;
}

/** Seconds of a Retry-After header (delta-seconds or HTTP date), 0 when absent or past. */
function retryAfterSeconds(header: unknown): number {
  const text = String(header ?? '').trim();
  if (text === '') return 0;
  const seconds = /^\d+$/.test(text) ? Number(text) : (Date.parse(text) - Date.now()) / 1000;
  return seconds > 0 ? Math.min(seconds, 86_400) : 0;
}

function originOf(url: unknown): string | undefined {
  return typeof url === 'string' && URL.canParse(url) ? new URL(url).origin : undefined;
}

/** What one order heard from its CA (acme-client's errors do not carry the status). */
interface OrderAnswers {
  lastStatus: number;
}

export class CaGate {
  private readonly origins = new Map<string, OriginState>();
  // An order's requests, acme-client's retries included, run in its async context, and
  // so do their answers: each order reads its own last status, not the one of
  // whichever concurrent order was answered last.
  private readonly orders = new AsyncLocalStorage<OrderAnswers>();

  constructor(private readonly now: () => number = Date.now) {}

  private state(origin: string): OriginState {
    let state = this.origins.get(origin);
    if (!state) this.origins.set(origin, (state = { until: 0, reason: '', lastStatus: 0 }));
    return state;
  }

  /** Epoch ms before which nothing may be sent to origin (0: not paused). */
  pausedUntil(origin: string): number {
    const until = this.origins.get(origin)?.until ?? 0;
    return this.now() < until ? until : 0;
  }

  /** Throws CaUnavailableError when origin is paused. */
  check(origin: string): void {
    const until = this.pausedUntil(origin);
    if (until) throw new CaUnavailableError(`the ACME directory ${this.origins.get(origin)!.reason}; no request before ${new Date(until).toISOString()}`);
  }

  /** Pauses origin until `until` (never shortens a pause already in force). */
  pause(origin: string, until: number, reason: string): void {
    const state = this.state(origin);
    if (until > state.until) {
      state.until = until;
      state.reason = reason;
    }
  }

  /** Notes an answer: its status, and a Retry-After on 429/503. */
  note(origin: string, status: number, retryAfter: unknown): void {
    const state = this.state(origin);
    state.lastStatus = status;
    const order = this.orders.getStore();
    if (order) order.lastStatus = status;
    if (status !== 429 && status !== 503) return;
    const seconds = retryAfterSeconds(retryAfter);
    if (seconds > 0) this.pause(origin, this.now() + seconds * 1000, `answered ${status} with Retry-After ${String(retryAfter)}`);
  }

  lastStatus(origin: string): number {
    return this.origins.get(origin)?.lastStatus ?? 0;
  }

  /** Runs one order: the answers to its requests are noted for it alone too. */
  runOrder<T>(order: () => Promise<T>): Promise<T> {
    return this.orders.run({ lastStatus: 0 }, order);
  }

  /**
   * The status of the last answer to the current order, or to anyone when the order
   * has had none of its own (its account was created by a concurrent order).
   */
  orderStatus(origin: string): number {
    return this.orders.getStore()?.lastStatus || this.lastStatus(origin);
  }

  /** The pause state of every origin (tests). */
  clear(): void {
    this.origins.clear();
  }
}

/** Process-wide, as acme-client's axios instance is: every issuer in the process shares it. */
export const caGate = new CaGate();

let installed: Promise<void> | undefined;

/** Once per process: puts the gate in front of every request of acme-client's axios instance. */
export function installCaGate(load: () => Promise<AcmeLib>): Promise<void> {
  installed ??= load().then((lib) => {
    const axios = lib.axios;
    // A refusal carries no axios config, so acme-client passes it on instead of retrying it.
    axios.interceptors.request.use((config) => {
      const origin = originOf(config.url);
      if (origin) caGate.check(origin);
      return config;
    });
    // transformResponse runs on every answer (acme-client makes all of them errors)
    // before any response interceptor, so before acme-client waits to retry.
    const transforms = axios.defaults.transformResponse;
    const existing = Array.isArray(transforms) ? transforms : transforms ? [transforms] : [];
    axios.defaults.transformResponse = [
      ...existing,
      function noteAnswer(this: { url?: string }, data: unknown, headers: { get?: (name: string) => unknown; [name: string]: unknown } | undefined, status?: number) {
        const origin = originOf(this?.url);
        const retryAfter = typeof headers?.get === 'function' ? headers.get('retry-after') : headers?.['retry-after'];
        if (origin && status) caGate.note(origin, status, retryAfter);
        return data;
      },
    ];
  });
  return installed;
}
