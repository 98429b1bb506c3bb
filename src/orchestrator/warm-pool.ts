// The warm pool (docs/warm-pool.md): VMs the driver booted with no program, waiting
// for a program's first request. The orchestrator sets one aside for a cold start
// (take), gives back one the driver did not use (a restore beat it), stops them
// first when a real program needs the room (evictOne), and refills in the
// background whenever there is room it does not take from anyone (room()).

import { createLogger, type Clock, type Timer } from '../common/index.js';
import type { WarmBooter, WarmVm } from '../drivers/index.js';
import type { Program } from '../programs/index.js';

const log = createLogger('warm-pool');

/** After a failed boot the next one waits this long, doubling up to the maximum. */
const RETRY_MS = { first: 1_000, max: 60_000 } as const;

export interface WarmPoolDeps {
  booter: WarmBooter;
  clock: Clock;
  /** How many VMs to keep warm (settings.prewarm, read at each refill). */
  target(): number;
  /**
   * Whether one more VM of `memoryMib` fits next to everything admitted and the pool
   * itself, with no boot waiting for room (the pool never takes room a program wants).
   */
  room(memoryMib: number): boolean;
  /** True when what is admitted plus the pool is over max_vms or the memory budget. */
  over(): boolean;
  /** Called when the pool's size changes (a VM stopped, so capacity was freed). */
  changed(): void;
}

interface Booting {
  abort: AbortController;
  done: Promise<void>;
}

export class WarmPool {
  private readonly waiting: WarmVm[] = [];
  private readonly booting = new Set<Booting>();
  private failures = 0;
  private retry: Timer | undefined;
  private closed = false;

  constructor(private readonly deps: WarmPoolDeps) {}

  /** VMs held, booted or booting: each counts against max_vms and the memory budget. */
  get count(): number {
    return this.waiting.length + this.booting.size;
  }

  get memoryMib(): number {
    return this.count * this.deps.booter.memoryMib;
  }

  /** Booted VMs waiting for a program. */
  get ready(): number {
    return this.waiting.length;
  }

  get starting(): number {
    return this.booting.size;
  }

  /** A booted VM this program fits, out of the pool (no longer counted here), or undefined. */
  take(program: Program): WarmVm | undefined {
    const index = this.waiting.findIndex((vm) => vm.fits(program));
    if (index === -1) return undefined;
    return this.waiting.splice(index, 1)[0];
  }

  /** A VM set aside for a program that did not use it: back in the pool, if it still fits. */
  giveBack(vm: WarmVm): void {
    if (vm.claimed) throw new Error('a VM a program was attached to never returns to the pool');
    if (this.closed) {
      void vm.stop();
      return;
    }
    this.keep(vm);
    this.trim();
  }

  /**
   * Stops one pooled VM to make room for a program (booting ones first: they serve
   * no one yet). Resolves once it has exited; false when the pool is empty.
   */
  async evictOne(): Promise<boolean> {
    const booting = [...this.booting].at(-1);
    if (booting) {
      booting.abort.abort();
      await booting.done;
      return true;
    }
    const vm = this.waiting.pop();
    if (!vm) return false;
    log.info('stopping a warm VM to make room for a program');
    await vm.stop();
    this.deps.changed();
    return true;
  }

  /** Starts boots until the pool holds its target, as far as there is room. */
  refill(): void {
    while (!this.closed && !this.retry && this.count < this.deps.target() && this.deps.room(this.deps.booter.memoryMib)) this.bootOne();
    this.trim();
  }

  /** Stops every pooled VM and boots no more (drain). */
  async close(): Promise<void> {
    this.closed = true;
    this.retry?.cancel();
    this.retry = undefined;
    const booting = [...this.booting];
    for (const b of booting) b.abort.abort();
    await Promise.all([...this.waiting.splice(0).map((vm) => vm.stop()), ...booting.map((b) => b.done)]);
  }

  /** Above the target (a reload lowered it) or over the budget (a given-back VM): the newest go. */
  private trim(): void {
    while (this.waiting.length > 0 && (this.count > this.deps.target() || this.deps.over())) {
      void this.waiting.pop()!.stop().then(() => this.deps.changed());
    }
  }

  private keep(vm: WarmVm): void {
    this.waiting.push(vm);
    void vm.exited.then((exit) => {
      const at = this.waiting.indexOf(vm);
      if (at === -1) return; // taken, or stopped by the pool itself
      this.waiting.splice(at, 1);
      log.warn('a warm VM exited while waiting for a program', { code: exit.code, signal: exit.signal });
      this.failed();
      this.deps.changed();
    });
  }

  private bootOne(): void {
    const abort = new AbortController();
    const entry: Booting = { abort, done: Promise.resolve() };
    this.booting.add(entry);
    entry.done = (async () => {
      try {
        const vm = await this.deps.booter.boot(abort.signal);
        this.booting.delete(entry);
        if (abort.signal.aborted || this.closed) {
          await vm.stop();
        } else {
          this.failures = 0;
          this.keep(vm);
        }
      } catch (error) {
        this.booting.delete(entry);
        if (!abort.signal.aborted && !this.closed) {
          log.warn('a warm VM failed to boot', { error: (error as Error).message });
          this.failed();
        }
      }
      this.deps.changed();
      // A boot that ended (well or not) may leave room for the next one.
      if (!abort.signal.aborted) this.refill();
    })();
  }

  /** Boots that keep failing are retried later, not in a loop. */
  private failed(): void {
    this.failures++;
    if (this.retry || this.closed) return;
    const ms = Math.min(RETRY_MS.first * 2 ** (this.failures - 1), RETRY_MS.max);
    this.retry = this.deps.clock.after(ms, () => {
      this.retry = undefined;
      this.refill();
    }, { unref: true });
  }
}
