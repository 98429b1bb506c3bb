// Pending TLS-ALPN-01 challenges (RFC 8737): host -> the self-signed validation
// certificate carrying the acmeIdentifier extension. The :443 listener serves it
// only to a client that negotiated the 'acme-tls/1' protocol, never to a browser.

import { createSecureContext, type SecureContext } from 'node:tls';
import { TLS_PROFILE } from './profile.js';

const DEFAULT_TTL_MS = 10 * 60_000;

interface Entry {
  context: SecureContext;
  certPem: string;
  keyPem: string;
  expiresAt: number;
}

export class AlpnChallengeStore {
  private readonly entries = new Map<string, Entry>();

  set(host: string, certPem: string, keyPem: string, ttlMs = DEFAULT_TTL_MS): void {
    const context = createSecureContext({ cert: certPem, key: keyPem, ...TLS_PROFILE });
    this.entries.set(host, { context, certPem, keyPem, expiresAt: Date.now() + ttlMs });
  }

  get(host: string): SecureContext | undefined {
    const entry = this.entries.get(host);
    if (!entry) return undefined;
    if (Date.now() >= entry.expiresAt) {
      this.entries.delete(host);
      return undefined;
    }
    return entry.context;
  }

  /** The validation certificate as PEM (for worker processes that build their own context). */
  pem(host: string): { certPem: string; keyPem: string } | undefined {
    if (!this.get(host)) return undefined;
    const { certPem, keyPem } = this.entries.get(host)!;
    return { certPem, keyPem };
  }

  delete(host: string): void {
    this.entries.delete(host);
  }

  get size(): number {
    return this.entries.size;
  }
}
