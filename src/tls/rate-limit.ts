// Token bucket for new certificate orders (tls.issue_rate): at most `burst` orders at
// once, refilled continuously at `burst` tokens per `interval`. It gates on-demand
// orders only; renewals of certificates we already hold are not counted.

export interface TokenBucketOptions {
  burst: number;
  intervalMs: number;
  now?: () => number;
}

export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly burst: number;
  private readonly perMs: number;
  private readonly now: () => number;

  constructor(options: TokenBucketOptions) {
    this.burst = Math.max(1, options.burst);
    this.perMs = this.burst / Math.max(1, options.intervalMs);
    this.now = options.now ?? Date.now;
    this.tokens = this.burst;
    this.last = this.now();
  }

  /** Takes one token when there is one; false means "rate limited, try later". */
  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Gives back a token taken for an order that was not placed after all. */
  refund(): void {
    this.tokens = Math.min(this.burst, this.tokens + 1);
  }

  get available(): number {
    this.refill();
    return Math.floor(this.tokens);
  }

  private refill(): void {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.perMs);
    this.last = now;
  }
}
