// Time as a dependency: the orchestrator's timers (boot timeout, idle reaper, drain
// deadline, backoff) read the clock they are given, so tests can drive them with a
// fake one instead of racing real time.

export interface Timer {
  /** Cancels the timer; a no-op once it has fired. */
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch (Date.now() for the real clock). */
  now(): number;
  /**
   * Calls `callback` once `ms` have passed. `unref` timers do not keep the process
   * alive (an idle reaper must not delay exit).
   */
  after(ms: number, callback: () => void, options?: { unref?: boolean }): Timer;
}

export const realClock: Clock = {
  now: () => Date.now(),
  after(ms, callback, options) {
    const handle = setTimeout(callback, Math.max(0, ms));
    if (options?.unref) handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
};
