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
  /** Executions in a row that died within stableMs of becoming ready, per program. */
  private readonly crashStreaks = new Map<string, number>();
  readonly stableMs: number;

  constructor(private readonly policy: BackoffPolicy = DEFAULT_BACKOFF, private readonly now: () => number = Date.now) {
    this.stableMs = policy.stableMs ?? DEFAULT_BACKOFF.stableMs!;
  }

  /** Records a failed boot; returns the delay before the next attempt is allowed. */
  fail(hash: string, reason: string): number {
    const failures = (this.entries.get(hash)?.failures ?? 0) + 1;
    const delay = Math.min(this.policy.maxMs, this.policy.baseMs * 2 ** (failures - 1));
    this.entries.set(hash, { failures, until: this.now() + delay, reason });
    return delay;
  }

  /**
   * An execution died on its own `upMs` after becoming ready. Within stableMs, the
   * first such death in a row is free (the next request boots a fresh one, as
   * docs/design.md says); from the second on it counts as a failed boot. Returns the
   * delay when it does.
   */
  crashed(hash: string, upMs: number, reason: string): number | undefined {
    if (upMs >= this.stableMs) return undefined;
    const streak = (this.crashStreaks.get(hash) ?? 0) + 1;
    this.crashStreaks.set(hash, streak);
    return streak >= 2 ? this.fail(hash, reason) : undefined;
  }

  /** An execution stayed up stableMs: failures and crashes are forgotten. */
  succeed(hash: string): void {
    this.entries.delete(hash);
    this.crashStreaks.delete(hash);
  }

  /** True while failures or early crashes are remembered for the program. */
  inStreak(hash: string): boolean {
    return this.entries.has(hash) || this.crashStreaks.has(hash);
  }

  /** While backing off: the remaining wait and the last failure reason. */
  blocked(hash: string): { remainingMs: number; reason: string; failures: number } | undefined {
    const entry = this.entries.get(hash);
    if (!entry) return undefined;
    const remainingMs = entry.until - this.now();
    return remainingMs > 0 ? { remainingMs, reason: entry.reason, failures: entry.failures } : undefined;
  }
}
