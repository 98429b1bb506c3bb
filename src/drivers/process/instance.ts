// One running program process and its lifecycle: exit tracking, and termination
// of its whole process group (graceful signal, then forced after the grace period).

import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../common/index.js';
import type { Endpoint, ExitInfo, Instance } from '../types.js';
import { groupAlive, signalGroup, trackGroup, untrackGroup } from '../host/index.js';

/** How often group liveness is re-checked while stopping. */
const POLL_MS = 25;
/** After SIGKILL, how long we wait for the kernel to tear the group down. */
const KILL_SETTLE_MS = 2000;

export class ProcessInstance implements Instance {
  readonly exited: Promise<ExitInfo>;
  readonly pid: number;
  guestApi?: Endpoint;
  private leaderExited = false;
  private requested = false;
  private termination: Promise<void> | undefined;

  constructor(
    child: ChildProcess & { pid: number },
    readonly endpoint: Endpoint,
    private readonly stopGraceMs: number,
    private readonly log: Logger,
    /** Called once the whole process group is gone (or could not be stopped). */
    private readonly onGone?: () => void,
  ) {
    this.pid = child.pid;
    trackGroup(this.pid);
    this.exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        this.leaderExited = true;
        const info: ExitInfo = { code, signal, requested: this.requested };
        if (info.requested) {
          this.log.info('program stopped', { code, signal });
        } else {
          this.log.warn('program exited unexpectedly', { code, signal });
          // Leftover children of a crashed program would leak; reap the group.
          void this.terminate();
        }
        resolve(info);
      });
    });
  }

  stop(): Promise<void> {
    if (!this.leaderExited) this.requested = true;
    return this.terminate();
  }

  /** Single termination sequence shared by stop() and unexpected-exit cleanup. */
  private terminate(): Promise<void> {
    this.termination ??= this.runTermination()
      .catch((err: unknown) => {
        this.log.error('failed to stop program', { error: (err as Error).message });
      })
      .finally(() => {
        untrackGroup(this.pid);
        this.onGone?.();
      });
    return this.termination;
  }

  private async runTermination(): Promise<void> {
    const deadline = performance.now() + this.stopGraceMs;
    if (this.leaderExited && !(await groupAlive(this.pid))) return;
    signalGroup(this.pid, 'SIGTERM');

    // Wait for the leader, then for the rest of the group, within one grace period.
    await this.leaderExitWithin(this.stopGraceMs);
    while (performance.now() < deadline && (await groupAlive(this.pid))) await sleep(POLL_MS);

    if (!this.leaderExited || (await groupAlive(this.pid))) {
      this.log.warn('program ignored SIGTERM, killing its process group', { grace_ms: this.stopGraceMs });
      signalGroup(this.pid, 'SIGKILL');
      await this.exited;
      const settle = performance.now() + KILL_SETTLE_MS;
      while (performance.now() < settle && (await groupAlive(this.pid))) await sleep(POLL_MS);
    }
    await this.exited;
  }

  /** Waits for the leader's exit, at most `ms` (the timer is cleared so it cannot hold the loop open). */
  private async leaderExitWithin(ms: number): Promise<void> {
    const timer = new AbortController();
    try {
      await Promise.race([this.exited, sleep(ms, undefined, { signal: timer.signal })]);
    } finally {
      timer.abort();
    }
  }
}
