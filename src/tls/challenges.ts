// Pending HTTP-01 challenges: token -> key authorization. The ACME issuer sets them
// while an order is validated; the :80 listener answers
// /.well-known/acme-challenge/<token> from here via CertificateResolver.httpChallenge.

const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;
const DEFAULT_TTL_MS = 10 * 60_000;

export class ChallengeStore {
  private readonly entries = new Map<string, { keyAuthorization: string; expiresAt: number }>();

  /** Registers a challenge; it expires after ttlMs in case the issuer never deletes it. */
  set(token: string, keyAuthorization: string, ttlMs = DEFAULT_TTL_MS): void {
    if (!TOKEN.test(token)) throw new Error('invalid ACME challenge token');
    this.entries.set(token, { keyAuthorization, expiresAt: Date.now() + ttlMs });
  }

  get(token: string): string | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    if (Date.now() >= entry.expiresAt) {
      this.entries.delete(token);
      return undefined;
    }
    return entry.keyAuthorization;
  }

  delete(token: string): void {
    this.entries.delete(token);
  }

  get size(): number {
    return this.entries.size;
  }
}
