// Per-program boot failure backoff: a broken program must not make the node boot
// it in a loop. Exponential, capped; reset once an execution has stayed up for
// `stableMs` (a program that dies on every request is a failing boot too).

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  /**
   * An execution that exits on its own within this time of becoming ready counts as
   * a failed boot (crash loop); one that stays up this long clears the failures.
   */
  stableMs?: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1_000, maxMs: 60_000, stableMs: 30_000 };

interface Entry {
  failures: number;
  until: number;
  reason: string;
}

export class BootBackoff {
  private readonly entries = new Map<string, Entry>();
  constructor(private readonly policy: BackoffPolicy = DEFAULT_BACKOFF, private readonly now: () => number = Date.now) {}

  /** Records a failed boot; returns the delay before the next attempt is allowed. */
  fail(hash: string, reason: string): number {
    const failures = (this.entries.get(hash)?.failures ?? 0) + 1;
    const delay = Math.min(this.policy.maxMs, this.policy.baseMs * 2 ** (failures - 1));
    this.entries.set(hash, { failures, until: this.now() + delay, reason });
    return delay;
  }

  succeed(hash: string): void {
    this.entries.delete(hash);
  }

  /** While backing off: the remaining wait and the last failure reason. */
  blocked(hash: string): { remainingMs: number; reason: string; failures: number } | undefined {
    const entry = this.entries.get(hash);
    if (!entry) return undefined;
    const remainingMs = entry.until - this.now();
    return remainingMs > 0 ? { remainingMs, reason: entry.reason, failures: entry.failures } : undefined;
  }

  failures(hash: string): number {
    return this.entries.get(hash)?.failures ?? 0;
  }
}
