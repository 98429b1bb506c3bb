// A clock the test moves by hand: timers fire only inside advance(), in due order,
// and every promise chain they start settles before advance() returns. Orchestrator
// tests read time from it instead of racing real timers.

import type { Clock, Timer } from '../../src/common/index.js';

interface Pending {
  at: number;
  seq: number;
  callback: () => void;
  cancelled: boolean;
}

/** Lets every queued callback, microtask and I/O completion run (one turn of the event loop, a few times). */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
}

export class FakeClock implements Clock {
  private time: number;
  private seq = 0;
  private timers: Pending[] = [];

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  after(ms: number, callback: () => void): Timer {
    if (!Number.isFinite(ms)) throw new TypeError(`timer of ${ms} ms`);
    const timer: Pending = { at: this.time + Math.max(0, ms), seq: this.seq++, callback, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => { timer.cancelled = true; } };
  }

  /** Timers not yet fired nor cancelled. */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /**
   * Moves time forward by `ms`, firing each timer that falls due at its own instant
   * (time reads as the timer's due time while its callback and what it starts run).
   */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    await settle();
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      const next = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.time = Math.max(this.time, next.at);
      next.cancelled = true;
      next.callback();
      await settle();
    }
    this.time = end;
    await settle();
  }
}

/** Waits until `check` holds, letting the event loop turn; fails after `turns` turns (never on wall time). */
export async function eventually(check: () => boolean, what: string, turns = 1000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (check()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`never happened: ${what}`);
}
