import { createSecureContext, type SecureContext } from 'node:tls';
import { LRUCache } from 'lru-cache';
import { TLS_PROFILE, type CertificateResolver, type CertInfo, type PemPair } from '../tls/index.js';
import type { WirePem } from './protocol.js';
import type { WorkerChannel } from './worker-channel.js';

// How long a worker trusts a context before asking again, so renewals in the
// primary reach every worker without an invalidation protocol.
const CONTEXT_TTL_MS = 10 * 60_000;

/** CertificateResolver of a worker: PEMs come from the primary; contexts are built and cached here. */
export class RemoteCertificates implements CertificateResolver {
  private readonly contexts: LRUCache<string, SecureContext>;
  private readonly inflight = new Map<string, Promise<SecureContext | undefined>>();

  /** Present in acme mode only, like the primary's manager (edge/ enables ALPN and stapling by their presence). */
  readonly alpnChallenge?: (servername: string) => Promise<SecureContext | undefined>;
  readonly ocspResponse?: (certificate: Buffer, issuer: Buffer | null) => Promise<Buffer | undefined>;

  constructor(private readonly channel: WorkerChannel, cacheSize: number, acme: boolean) {
    this.contexts = new LRUCache({ max: Math.max(1, cacheSize), ttl: CONTEXT_TTL_MS });
    if (acme) {
      // Validation certificates live for seconds: never cached here.
      this.alpnChallenge = async (servername) => {
        const pem = await channel.call<WirePem | null>({ type: 'alpn-certificate', servername });
        return pem ? createSecureContext({ cert: pem.cert, key: pem.key, ...TLS_PROFILE }) : undefined;
      };
      this.ocspResponse = async (certificate, issuer) => {
        const staple = await channel.call<string | null>({
          type: 'ocsp', certificate: certificate.toString('base64'), issuer: issuer ? issuer.toString('base64') : null,
        });
        return staple ? Buffer.from(staple, 'base64') : undefined;
      };
    }
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

  /** The PEM pair for a name (the listener's default certificate, for clients without SNI). */
  async certificate(servername: string): Promise<PemPair | undefined> {
    const pem = await this.channel.call<WirePem | null>({ type: 'certificate', servername });
    return pem ? { certPem: pem.cert, keyPem: pem.key } : undefined;
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
    const context = createSecureContext({ cert: pem.cert, key: pem.key, ...TLS_PROFILE });
    this.contexts.set(servername, context);
    return context;
  }
}
