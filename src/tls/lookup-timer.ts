// The handshake-side certificate lookup histogram, shared by both resolvers
// (files, and the issuing manager) so they report under one name and labels.

import type { Histogram, MetricsRegistry } from '../metrics/index.js';

/** Where a handshake's certificate came from. */
export type LookupResult = 'cache' | 'storage' | 'issued' | 'none';

export class LookupTimer {
  private readonly histogram: Histogram;

  constructor(registry: MetricsRegistry) {
    this.histogram = registry.histogram('aleph_edge_tls_cert_lookup_seconds', 'Time to find the certificate for a handshake, by result (cache, storage, issued, none)');
  }

  /** Runs find, which sets outcome.result as it goes; a miss is recorded as 'none'. */
  async time<T>(find: (outcome: { result: LookupResult }) => Promise<T | undefined>): Promise<T | undefined> {
    const started = performance.now();
    const outcome: { result: LookupResult } = { result: 'cache' };
    const found = await find(outcome);
    this.histogram.observe((performance.now() - started) / 1000, { result: found ? outcome.result : 'none' });
    return found;
  }
}
