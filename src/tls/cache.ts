// In-memory certificate cache: host -> ready TLS context. Bounded (LRU) so a node
// serving many hosts keeps only the hot ones; evicted hosts are reloaded from disk.
// Only certificates we can serve are cached, never "no certificate" answers: those
// depend on the policy, which caches its own answers.

import type { SecureContext } from 'node:tls';
import { LRUCache } from 'lru-cache';
import type { PemPair } from './pair.js';
import type { CertInfo } from './types.js';

export interface CachedCert {
  context: SecureContext;
  /** Kept so worker processes can be handed the certificate (they build their own contexts). */
  pem: PemPair;
  info: CertInfo;
  /** Epoch ms. */
  notAfter: number;
  /** Epoch ms after which a replacement is ordered in the background. */
  renewAt: number;
  fingerprint256: string;
}

export class CertCache {
  private readonly entries: LRUCache<string, CachedCert>;

  constructor(capacity: number) {
    this.entries = new LRUCache({ max: Math.max(1, Math.floor(capacity)) });
  }

  get(host: string): CachedCert | undefined {
    return this.entries.get(host);
  }

  set(host: string, entry: CachedCert): void {
    this.entries.set(host, entry);
  }

  delete(host: string): void {
    this.entries.delete(host);
  }

  /** Removes every entry the predicate selects. */
  dropWhere(predicate: (entry: CachedCert) => boolean): void {
    for (const [host, entry] of this.entries.entries()) if (predicate(entry)) this.entries.delete(host);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Every cached entry, without touching recency. */
  values(): CachedCert[] {
    return [...this.entries.values()];
  }
}
