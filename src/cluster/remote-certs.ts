import { createSecureContext, type SecureContext } from 'node:tls';
import { LRUCache } from 'lru-cache';
import type { CertificateResolver, CertInfo } from '../tls/index.js';
import type { WirePem } from './protocol.js';
import type { WorkerChannel } from './worker-channel.js';

// How long a worker trusts a context before asking again, so renewals in the
// primary reach every worker without an invalidation protocol.
const CONTEXT_TTL_MS = 10 * 60_000;

/** CertificateResolver of a worker: PEMs come from the primary; contexts are built and cached here. */
export class RemoteCertificates implements CertificateResolver {
  private readonly contexts: LRUCache<string, SecureContext>;
  private readonly inflight = new Map<string, Promise<SecureContext | undefined>>();

  constructor(private readonly channel: WorkerChannel, cacheSize: number) {
    this.contexts = new LRUCache({ max: Math.max(1, cacheSize), ttl: CONTEXT_TTL_MS });
  }

  secureContext(servername: string): Promise<SecureContext | undefined> {
    const key = servername.toLowerCase();
    const cached = this.contexts.get(key);
    if (cached) return Promise.resolve(cached);
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.fetch(key).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  httpChallenge(token: string): Promise<string | undefined> {
    return this.channel.call<string | undefined>({ type: 'challenge', token });
  }

  /** The primary lists certificates; workers have nothing of their own to add. */
  async list(): Promise<CertInfo[]> {
    return [];
  }

  private async fetch(servername: string): Promise<SecureContext | undefined> {
    const pem = await this.channel.call<WirePem | null>({ type: 'certificate', servername });
    if (!pem) return undefined;
    const context = createSecureContext({ cert: pem.cert, key: pem.key, minVersion: 'TLSv1.2' });
    this.contexts.set(servername, context);
    return context;
  }
}
