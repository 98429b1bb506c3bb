import type { OrchestratorSettings } from '../config/index.js';
import { BootFailedError, EdgeError, NotFoundError, UnavailableError, UpstreamError, createLogger, realClock, retryAfterSeconds, shortHash, type Clock } from '../common/index.js';
import type { Driver, Endpoint, Slot } from '../drivers/index.js';
import type { MetricsRegistry } from '../metrics/index.js';
import type { ProgramSource } from '../programs/index.js';
import { BootBackoff, type BackoffPolicy } from './backoff.js';
import { Execution, type BootOrigin } from './execution.js';
import { Keeper, type KeepReason, type KeptProgram } from './keeper.js';
import { ProgramLogs, type LogEntry, type LogLimits, type LogListener } from './logs.js';
import { orchestratorMetrics, type OrchestratorMetrics } from './metrics.js';
import { WarmPool } from './warm-pool.js';
import type { ExecutionGateway, ExecutionInfo, ExecutionState, GuestServices, Lease } from './types.js';

/** Resolves once the program answers at its endpoint; rejects when the signal aborts. */
export type ReadinessProbe = (endpoint: Endpoint, options: { path: string; signal: AbortSignal }) => Promise<void>;

export interface OrchestratorDeps {
  settings: OrchestratorSettings;
  programs: ProgramSource;
  driver: Driver;
  probe: ReadinessProbe;
  metrics: MetricsRegistry;
  backoff?: BackoffPolicy;
  /** The guest API; without it programs get none (no slot.guestApi). */
  guest?: GuestServices;
  /** Time and timers (boot timeout, idle reaper, drain deadline, backoff); the real clock by default. */
  clock?: Clock;
  /** Where the kept set (keep()) is persisted; without it the set lives in memory only. */
  keptFile?: string;
  /** Bounds of the per-program output buffers (logs()). */
  logLimits?: LogLimits;
}

export type StopReason = 'idle' | 'evicted' | 'requested' | 'drain' | 'removed' | 'unhealthy';

const log = createLogger('orchestrator');

class BootTimeout extends Error {}

/** How long a boot may wait for room when every admitted execution is busy (bounded by half the boot timeout). */
export const ADMISSION_WAIT_MS = 10_000;
class BootCancelled extends Error {}

/**
 * The pool of executions: one current execution per program hash, booted lazily by
 * the first request (single flight), reused while warm, stopped when idle.
 */
export class Orchestrator implements ExecutionGateway {
  private settings: OrchestratorSettings;
  private readonly programs: ProgramSource;
  private readonly driver: Driver;
  private readonly probe: ReadinessProbe;
  private readonly guest: GuestServices | undefined;
  private readonly metrics: OrchestratorMetrics;
  private readonly backoff: BootBackoff;
  private readonly clock: Clock;
  /** The current execution per hash (starting, ready or draining). */
  private readonly current = new Map<string, Execution>();
  /** Executions on their way out; they still count against capacity. */
  private readonly retiring = new Set<Execution>();
  /** Boots per hash, for the `restarts` figure. */
  private readonly bootCounts = new Map<string, number>();
  /** The last failed execution per hash, shown by list() until the program runs again (crash loops stay visible). */
  private readonly failures = new Map<string, Execution>();
  private sequence = 0;
  private draining = false;
  private readonly retireListeners: Array<(hash: string) => void> = [];
  private readonly keeper: Keeper;
  private readonly output: ProgramLogs;
  /** Boots waiting in admit() for room. */
  private readonly capacityWaiters = new Set<() => void>();
  /** Boots inside admit(): while any is, the warm pool takes no room. */
  private admitting = 0;
  /** VMs booted with no program (settings.prewarm), when the driver can keep them. */
  private readonly pool: WarmPool | undefined;

  constructor(deps: OrchestratorDeps) {
    this.settings = deps.settings;
    this.programs = deps.programs;
    this.driver = deps.driver;
    this.probe = deps.probe;
    this.guest = deps.guest;
    this.metrics = orchestratorMetrics(deps.metrics);
    this.clock = deps.clock ?? realClock;
    this.backoff = new BootBackoff(deps.backoff, () => this.clock.now());
    this.output = new ProgramLogs(deps.logLimits);
    this.keeper = new Keeper({
      file: deps.keptFile,
      start: (hash) => this.bootKept(hash),
      stop: async (hash) => { await this.stop(hash, 'requested'); },
      retryInMs: (hash) => this.backoff.blocked(hash)?.remainingMs,
      clock: this.clock,
    });
    if (this.driver.prewarm) {
      this.pool = new WarmPool({
        booter: this.driver.prewarm,
        clock: this.clock,
        target: () => (this.draining ? 0 : this.settings.prewarm ?? 0),
        room: (memoryMib) => this.admitting === 0 && this.fits(1, memoryMib),
        over: () => !this.fits(0, 0),
        changed: () => this.capacityChanged(),
      });
      const pool = this.pool;
      this.metrics.warmVms.collect(() => [[{ state: 'ready' }, pool.ready], [{ state: 'booting' }, pool.starting]]);
    }
    this.metrics.executions.collect(() => {
      const counts = new Map<ExecutionState, number>();
      for (const e of this.all()) counts.set(e.state, (counts.get(e.state) ?? 0) + 1);
      return [...counts].map(([state, n]) => [{ state }, n]);
    });
  }

  async acquire(hash: string, signal?: AbortSignal): Promise<Lease> {
    const warm = this.leaseIfReady(hash);
    if (warm) return warm;
    if (this.draining) throw this.reject('draining', new UnavailableError('node is draining', 5, 'draining'));
    let execution = this.current.get(hash);
    if (!execution) {
      const blocked = this.backoff.blocked(hash);
      if (blocked) {
        this.metrics.rejections.inc({ reason: 'backoff' });
        const waitS = retryAfterSeconds(blocked.remainingMs);
        throw new BootFailedError(`program failed to boot: ${blocked.reason} (next attempt in ${waitS}s)`, { retryAfterS: waitS });
      }
      execution = this.boot(hash, 'request');
    }
    if (execution.waiters >= this.settings.holdQueue) {
      throw this.reject('queue_full', new UnavailableError('too many requests waiting for this program to start', 1, 'queue_full'));
    }
    execution.waiters++;
    try {
      await waitFor(execution.ready, signal);
    } finally {
      execution.waiters--;
    }
    if (execution.state !== 'ready') throw new UpstreamError('program stopped before it could serve the request');
    return this.lease(execution);
  }

  leaseIfReady(hash: string): Lease | undefined {
    if (this.draining) return undefined;
    const execution = this.current.get(hash);
    return execution?.state === 'ready' ? this.lease(execution) : undefined;
  }

  onRetire(listener: (hash: string) => void): void {
    this.retireListeners.push(listener);
  }

  /** Executions for the status API. */
  list(): ExecutionInfo[] {
    const failed = [...this.failures.values()].filter((e) => !this.current.has(e.hash));
    return [...this.all(), ...failed].map((e) => e.info(Math.max(0, (this.bootCounts.get(e.hash) ?? 1) - 1)));
  }

  /** Stops the program's current execution; false when none is running. */
  async stop(hash: string, reason: StopReason = 'requested'): Promise<boolean> {
    const execution = this.current.get(hash);
    if (!execution) return false;
    await this.retire(execution, reason);
    return true;
  }

  /**
   * Starts the program now (no request needed) and keeps it running: never stopped
   * for idleness or evicted, restarted with backoff when it dies, started again after
   * a node restart (see resumeKept). Resolves once the intent is persisted; the boot
   * goes on in the background.
   */
  keep(hash: string, reason: KeepReason): Promise<void> {
    return this.keeper.keep(hash, reason);
  }

  /** Stops the kept program and forgets it. */
  unkeep(hash: string): Promise<void> {
    return this.keeper.unkeep(hash);
  }

  kept(): KeptProgram[] {
    return this.keeper.list();
  }

  /** What the program printed lately, across its executions, oldest first. */
  logs(hash: string): LogEntry[] {
    return this.output.lines(hash);
  }

  /** Follows the program's output live; call the returned function to stop. */
  followLogs(hash: string, listener: LogListener): () => void {
    return this.output.subscribe(hash, listener);
  }

  /** At node start: starts every program the last run kept. */
  resumeKept(): Promise<void> {
    return this.keeper.restore();
  }

  /** Applies new settings (reload). Running executions keep going under the new limits. */
  updateSettings(settings: OrchestratorSettings): void {
    this.settings = settings;
    this.pool?.refill();
  }

  /** At node start: boots the warm pool (settings.prewarm VMs, as far as the budget allows). */
  prewarm(): void {
    this.pool?.refill();
  }

  /** Refuses new work, lets in-flight requests finish until the deadline, stops everything. */
  async drain(deadlineMs: number): Promise<void> {
    this.draining = true;
    this.keeper.close();
    const deadline = this.clock.now() + deadlineMs;
    await Promise.all([this.pool?.close(), ...[...this.current.values()].map((e) => this.retire(e, 'drain', deadline))]);
    await Promise.all([...this.retiring].map((e) => e.stopping));
  }

  /**
   * A drain cut short (a second SIGINT/SIGTERM): executions still serving requests
   * are stopped now instead of at the deadline; their open streams are cut.
   */
  hurry(): void {
    this.draining = true;
    this.keeper.close();
    void this.pool?.close();
    for (const execution of [...this.current.values()]) void this.retire(execution, 'drain', this.clock.now());
    for (const execution of this.retiring) for (const wake of execution.idleWaiters.splice(0)) wake();
  }

  /**
   * Gracefully replaces an execution: it takes no new requests, finishes what it
   * serves (until the deadline), then stops.
   */
  async retire(execution: Execution, reason: StopReason, deadline = Number.POSITIVE_INFINITY): Promise<void> {
    // From now on requests for this program boot a fresh execution.
    if (this.current.get(execution.hash) === execution) this.current.delete(execution.hash);
    this.notifyRetired(execution.hash);
    if (execution.state === 'ready' || execution.state === 'draining') this.retiring.add(execution);
    if (execution.state === 'ready' && execution.inFlight > 0) {
      execution.transition('draining');
      execution.clearIdleTimer();
    }
    if (execution.state === 'draining' && execution.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = Number.isFinite(deadline) ? this.clock.after(deadline - this.clock.now(), resolve) : undefined;
        execution.idleWaiters.push(() => {
          timer?.cancel();
          resolve();
        });
      });
    }
    await this.stopExecution(execution, reason);
  }

  private notifyRetired(hash: string): void {
    for (const listener of this.retireListeners) listener(hash);
  }

  private all(): Execution[] {
    return [...this.current.values(), ...this.retiring];
  }

  private reject(reason: string, error: EdgeError): EdgeError {
    this.metrics.rejections.inc({ reason });
    return error;
  }

  private lease(execution: Execution): Lease {
    const instance = execution.instance!;
    const program = execution.program!;
    execution.clearIdleTimer();
    execution.inFlight++;
    execution.requests++;
    execution.lastRequestAt = this.clock.now();
    let released = false;
    let lingering = false;
    return {
      hash: execution.hash,
      endpoint: instance.endpoint,
      requestTimeoutMs: program.requestTimeoutMs || this.settings.requestTimeoutMs,
      codeRef: program.codeRef,
      release: (requests = 1, idleForMs = 0) => {
        if (released) return;
        released = true;
        if (lingering) execution.lingering--;
        execution.requests += Math.max(0, requests - 1);
        execution.inFlight--;
        const idleFor = Math.max(0, Math.min(idleForMs, this.settings.idleTimeoutMs));
        execution.lastRequestAt = Math.max(execution.lastRequestAt ?? 0, this.clock.now() - idleFor);
        if (execution.inFlight === 0) this.onIdle(execution);
        if (execution.inFlight === execution.lingering) this.capacityChanged();
      },
      linger: (now) => {
        if (released || now === lingering) return;
        lingering = now;
        execution.lingering += now ? 1 : -1;
        if (now) this.capacityChanged();
      },
      reportFailure: (reason, fatal) => {
        execution.lastError = reason;
        // The program no longer accepts connections although its process lives on:
        // take it out so the next request boots a healthy one.
        if (fatal && this.current.get(execution.hash) === execution) {
          log.warn('program unreachable, replacing it', { hash: shortHash(execution.hash), reason });
          void this.retire(execution, 'unhealthy', this.clock.now());
        }
      },
    };
  }

  private onIdle(execution: Execution): void {
    if (execution.idleWaiters.length > 0) {
      const waiters = execution.idleWaiters;
      execution.idleWaiters = [];
      for (const done of waiters) done();
      return;
    }
    if (execution.state !== 'ready' || execution.waiters > 0 || this.pinned(execution)) return;
    execution.clearIdleTimer();
    // Counted from the last request, which a worker may report as a moment ago.
    execution.idleTimer = this.clock.after(this.settings.idleTimeoutMs - (this.clock.now() - execution.lastUsedAt), () => {
      if (execution.idle && !this.pinned(execution)) void this.stopExecution(execution, 'idle');
    }, { unref: true });
  }

  /**
   * Starts the program now, without a request, and resolves once it is ready (after
   * keep(), to wait for the boot and see its error). Resolves at once when it runs.
   */
  async start(hash: string): Promise<void> {
    if (this.draining) throw new UnavailableError('node is draining', 5, 'draining');
    const running = this.current.get(hash);
    if (running) return running.ready;
    const blocked = this.backoff.blocked(hash);
    if (blocked) {
      const waitS = retryAfterSeconds(blocked.remainingMs);
      throw new BootFailedError(`program failed to boot: ${blocked.reason} (next attempt in ${waitS}s)`, { retryAfterS: waitS });
    }
    return this.boot(hash, 'operator').ready;
  }

  /**
   * Removes what the program keeps between executions (an instance's disk): its
   * execution is stopped first. False when there was nothing to erase.
   */
  async erase(hash: string): Promise<boolean> {
    if (this.keeper.has(hash)) await this.keeper.unkeep(hash);
    await this.stop(hash, 'requested');
    for (const execution of [...this.retiring].filter((e) => e.hash === hash)) await execution.stopping;
    if (!this.driver.erase) return false;
    const program = await this.programs.resolve(hash);
    const erased = await this.driver.erase(program);
    if (erased) log.info('program erased', { hash: shortHash(hash) });
    return erased;
  }

  private boot(hash: string, origin: BootOrigin): Execution {
    const id = `${shortHash(hash)}-${++this.sequence}`;
    const execution = new Execution(hash, id, this.driver.name, (e, from, to) => this.onTransition(e, from, to), this.clock.now(), origin);
    this.current.set(hash, execution);
    execution.ready = this.runBoot(execution);
    // Waiters observe the rejection; this keeps an unwaited failure from being "unhandled".
    execution.ready.catch(() => {});
    return execution;
  }

  private async runBoot(execution: Execution): Promise<void> {
    const { hash } = execution;
    const signal = execution.bootAbort.signal;
    let timer = this.clock.after(this.settings.bootTimeoutMs, () => execution.bootAbort.abort(new BootTimeout()));
    const t0 = performance.now();
    try {
      const program = await waitFor(this.programs.resolve(hash), signal);
      execution.program = program;
      // An instance runs because it was allocated or its owner asked, never because a request came.
      if (program.launch.kind === 'machine' && execution.origin === 'request') {
        throw new NotFoundError('this hash is an instance that is not running here (instances are started by their allocation, not by requests)');
      }
      // A warm VM this program fits is set aside before admission: its memory, counted by
      // the pool until now, is the execution's from here on (admission needs no more room).
      if (this.pool && program.launch.kind !== 'machine') execution.warm = this.pool.take(program);
      this.admitting++;
      try {
        await this.admit(execution, signal);
      } finally {
        this.admitting--;
      }
      // Room left after this admission goes to the pool (with a warm VM set aside, after the start: it may come back).
      if (!execution.warm) this.pool?.refill();
      // The wait for room is bounded on its own (ADMISSION_WAIT_MS): boot_timeout counts from here.
      timer.cancel();
      timer = this.clock.after(this.settings.bootTimeoutMs, () => execution.bootAbort.abort(new BootTimeout()));
      log.info('program starting', { hash: shortHash(hash), name: program.name || undefined, driver: this.driver.name, id: execution.id });
      this.bootCounts.set(hash, (this.bootCounts.get(hash) ?? 0) + 1);
      const slot: Slot = { executionId: execution.id, output: (stream, line) => this.output.append(hash, execution.id, stream, line) };
      if (execution.warm) slot.warm = execution.warm;
      if (this.guest) {
        const opening = this.guest.open(program, execution.id);
        // A session opened after a timeout must not stay open.
        opening.then((guest) => { if (signal.aborted) void guest.close(); }, () => {});
        try {
          execution.guest = await waitFor(opening, signal);
        } catch (error) {
          if (signal.aborted) throw error;
          throw new BootFailedError(`guest API unavailable: ${describe(error)}`);
        }
        slot.guestApi = { socket: execution.guest.socket };
      }
      const started = this.driver.start(program, slot);
      // A start that completes after a timeout must not leave the program running.
      started.then((instance) => { if (signal.aborted) void instance.stop(); }, () => {});
      const instance = await waitFor(started, signal);
      execution.instance = instance;
      this.returnWarm(execution);
      if (instance.fromPool) this.metrics.warmTakes.inc();
      void instance.exited.then((exit) => {
        void execution.closeGuest();
        if (!exit.requested) this.onUnexpectedExit(execution, exit.code, exit.signal);
      });
      const t1 = performance.now();
      const exited = handled(instance.exited.then((exit) => {
        throw new Error(`program exited during boot (${exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`})`);
      }));
      // The probe stops when the race is decided either way (a program that died must not be polled forever).
      const probing = new AbortController();
      try {
        const probeSignal = AbortSignal.any([signal, probing.signal]);
        if (!instance.readyWhenStarted) {
          await Promise.race([this.probe(instance.endpoint, { path: program.healthPath, signal: probeSignal }), exited, handled(abortion(signal))]);
        }
      } finally {
        probing.abort();
      }
      const t2 = performance.now();
      execution.bootMs = Math.round(t2 - t0);
      execution.readyAt = this.clock.now();
      execution.transition('ready');
      this.failures.delete(hash);
      this.clearBackoffWhenStable(execution);
      this.metrics.boots.inc();
      this.metrics.bootDuration.observe((t1 - t0) / 1000, { phase: 'start' });
      this.metrics.bootDuration.observe((t2 - t1) / 1000, { phase: 'ready' });
      this.metrics.bootDuration.observe((t2 - t0) / 1000, { phase: 'total' });
      log.info('program ready', {
        hash: shortHash(hash), id: execution.id, pid: instance.pid,
        start_ms: Math.round(t1 - t0), ready_ms: Math.round(t2 - t1),
        ...(instance.restored ? { restored: true } : {}),
      });
      instance.ready?.();
      this.onIdle(execution);
    } catch (error) {
      await this.failBoot(execution, error);
    } finally {
      timer.cancel();
    }
  }

  /** Turns any boot error into what the client should see, and cleans up. Always throws. */
  private async failBoot(execution: Execution, error: unknown): Promise<never> {
    const { hash } = execution;
    if (this.current.get(hash) === execution) this.current.delete(hash);
    const cause = execution.bootAbort.signal.aborted ? execution.bootAbort.signal.reason : error;
    if (execution.state === 'starting') execution.transition('failed');
    this.returnWarm(execution);
    // Kill a half-started program before anyone retries.
    if (execution.instance) {
      this.retiring.add(execution);
      try { await execution.instance.stop(); } finally { this.retiring.delete(execution); }
    }
    if (execution.admitted) {
      execution.admitted = false;
      this.capacityChanged();
    }
    await execution.closeGuest();
    // A request-level refusal (unknown program, no capacity) is not a broken program.
    if (cause instanceof EdgeError && !(cause instanceof BootFailedError)) throw cause;
    // Stopped while booting (drain, stop verb): not the program's fault either.
    if (cause instanceof BootCancelled) throw new UnavailableError('program was stopped while starting', 1, 'draining');
    const reason = cause instanceof BootTimeout ? `boot timed out after ${this.settings.bootTimeoutMs} ms` : describe(cause);
    execution.lastError = reason;
    this.failures.set(hash, execution);
    const delay = this.backoff.fail(hash, reason);
    this.keeperLost(hash);
    this.metrics.bootFailures.inc({ reason: cause instanceof BootTimeout ? 'timeout' : 'error' });
    log.warn('program failed to boot', { hash: shortHash(hash), id: execution.id, reason, retry_in_ms: delay });
    throw new BootFailedError(`program failed to boot: ${reason}`, { retryAfterS: retryAfterSeconds(delay) });
  }

  /**
   * Makes room under max_vms and memory_budget_mib, evicting idle executions LRU-first.
   * When everything admitted is starting or serving, waits (ADMISSION_WAIT_MS at most)
   * for one to come free rather than refuse at once: a burst over many programs then
   * queues briefly instead of failing.
   */
  private async admit(execution: Execution, signal: AbortSignal): Promise<void> {
    const giveUpAt = this.clock.now() + Math.min(ADMISSION_WAIT_MS, this.settings.bootTimeoutMs / 2);
    const need = execution.memoryMib;
    if (need > this.settings.memoryBudgetMib) {
      throw new BootFailedError(`program needs ${need} MiB, more than this node's budget of ${this.settings.memoryBudgetMib} MiB`);
    }
    for (;;) {
      // Boots still resolving their program or waiting here hold nothing yet: only admitted ones count.
      if (this.fits(1, need, execution)) {
        execution.admitted = true;
        return;
      }
      // Warm VMs serve no one yet: they go before any program.
      if (await this.pool?.evictOne()) continue;
      const others = this.all().filter((e) => e !== execution && e.admitted);
      // Idle, or held only by workers' lingering leases; never one with a request in flight, never a kept one.
      const victim = others.filter((e) => (e.idle || e.onlyLingering) && !this.pinned(e)).sort((a, b) => a.lastUsedAt - b.lastUsedAt)[0];
      if (!victim) {
        if (this.clock.now() >= giveUpAt) throw this.reject('capacity', new UnavailableError('node is at capacity', 5, 'capacity'));
        await this.nextCapacityChange(giveUpAt, signal);
        continue;
      }
      this.metrics.evictions.inc();
      log.info('evicting idle program', { hash: shortHash(victim.hash), for: shortHash(execution.hash) });
      // Retiring tells the workers, which give unused leases back at once; a request that
      // took a lingering lease meanwhile is finished first, never cut.
      if (victim.idle) await this.stopExecution(victim, 'evicted');
      else await this.retire(victim, 'evicted');
    }
  }

  private stopExecution(execution: Execution, reason: StopReason): Promise<void> {
    if (execution.stopping) return execution.stopping;
    if (execution.state === 'starting') {
      // Cancel the boot; runBoot's failure path kills whatever was started.
      execution.bootAbort.abort(new BootCancelled());
      return execution.ready.then(() => this.stopExecution(execution, reason), () => {});
    }
    if (execution.state === 'stopped' || execution.state === 'failed') return Promise.resolve();
    execution.clearIdleTimer();
    execution.transition('stopping');
    if (this.current.get(execution.hash) === execution) {
      this.current.delete(execution.hash);
      this.notifyRetired(execution.hash);
    }
    this.retiring.add(execution);
    const uptimeMs = this.clock.now() - execution.startedAt;
    execution.stopping = (async () => {
      try {
        await execution.instance?.stop();
      } finally {
        await execution.closeGuest();
        this.retiring.delete(execution);
        execution.admitted = false;
        this.capacityChanged();
        if (execution.state === 'stopping') execution.transition('stopped');
        this.metrics.stops.inc({ reason });
        // Replaced (unhealthy, amended): a kept program comes back. Asked to stop: it stays down.
        if (reason === 'unhealthy' || reason === 'removed') this.keeperLost(execution.hash);
        log.info('program stopped', { hash: shortHash(execution.hash), id: execution.id, reason, uptime_s: Math.round(uptimeMs / 1000), requests: execution.requests });
      }
    })();
    return execution.stopping;
  }

  /** Wakes boots waiting in admit(): an execution stopped, or has no request in flight any more. */
  private capacityChanged(): void {
    const waiters = [...this.capacityWaiters];
    this.capacityWaiters.clear();
    for (const wake of waiters) wake();
    // Room nobody waits for goes to the warm pool (a waiting boot refills it once admitted, runBoot).
    if (waiters.length === 0) this.pool?.refill();
  }

  /**
   * Whether `vms` more VMs of `memoryMib` in all fit under max_vms and the memory
   * budget, next to every admitted execution (but `except`) and the warm pool.
   */
  private fits(vms: number, memoryMib: number, except?: Execution): boolean {
    const admitted = this.all().filter((e) => e !== except && e.admitted);
    const memory = admitted.reduce((sum, e) => sum + e.memoryMib, 0) + (this.pool?.memoryMib ?? 0);
    return admitted.length + (this.pool?.count ?? 0) + vms <= this.settings.maxVms && memory + memoryMib <= this.settings.memoryBudgetMib;
  }

  /** After the driver's start: a warm VM set aside for this execution and not used goes back to the pool. */
  private returnWarm(execution: Execution): void {
    const warm = execution.warm;
    execution.warm = undefined;
    if (!warm) return;
    // Used: the pool refills now that the program's VM is its own (not earlier: an unused one comes back).
    if (warm.claimed) this.pool?.refill();
    else this.pool?.giveBack(warm);
  }

  /** Resolves at the next capacity change or at `until`; rejects when the boot is aborted. */
  private async nextCapacityChange(until: number, signal: AbortSignal): Promise<void> {
    let wake!: () => void;
    const changed = new Promise<void>((resolve) => (wake = resolve));
    this.capacityWaiters.add(wake);
    const timer = this.clock.after(until - this.clock.now(), wake);
    try {
      await waitFor(changed, signal);
    } finally {
      timer.cancel();
      this.capacityWaiters.delete(wake);
    }
  }

  /** The failure streak ends once the execution has run `stableMs` without dying. */
  private clearBackoffWhenStable(execution: Execution): void {
    if (!this.backoff.inStreak(execution.hash)) return;
    this.clock.after(this.backoff.stableMs, () => {
      if (execution.state === 'ready' || execution.state === 'draining') this.backoff.succeed(execution.hash);
    }, { unref: true });
  }

  private onUnexpectedExit(execution: Execution, code: number | null, signal: string | null): void {
    const how = signal ? `signal ${signal}` : `code ${code}`;
    execution.lastError = `exited unexpectedly (${how})`;
    if (execution.state !== 'starting' && execution.readyAt !== undefined) {
      const upMs = this.clock.now() - execution.readyAt;
      const delay = this.backoff.crashed(execution.hash, upMs, `${execution.lastError} ${Math.round(upMs / 1000)} s after start`);
      if (delay !== undefined) {
        this.metrics.bootFailures.inc({ reason: 'crashed' });
        log.warn('program keeps crashing soon after start; backing off', { hash: shortHash(execution.hash), retry_in_ms: delay });
      }
    }
    execution.clearIdleTimer();
    if (this.current.get(execution.hash) === execution) this.current.delete(execution.hash);
    this.retiring.delete(execution);
    if (execution.state === 'starting') return; // the boot path reports it
    if (execution.admitted) {
      execution.admitted = false;
      this.capacityChanged();
    }
    this.notifyRetired(execution.hash);
    if (execution.state !== 'stopped' && execution.state !== 'failed') execution.transition('failed');
    this.failures.set(execution.hash, execution);
    this.metrics.stops.inc({ reason: 'crashed' });
    log.warn('program exited unexpectedly', { hash: shortHash(execution.hash), id: execution.id, exit: how, in_flight: execution.inFlight });
    this.keeperLost(execution.hash);
  }

  /** Boots a kept program unless it runs; resolves when ready (no lease: it serves no request). */
  private async bootKept(hash: string): Promise<void> {
    if (this.draining) throw new UnavailableError('node is draining', 5, 'draining');
    let execution = this.current.get(hash);
    if (!execution) {
      const blocked = this.backoff.blocked(hash);
      if (blocked) throw new BootFailedError(`program failed to boot: ${blocked.reason}`);
      execution = this.boot(hash, 'operator');
    }
    await execution.ready;
  }

  /** Kept and persistent programs are never stopped for idleness nor evicted. */
  private pinned(execution: Execution): boolean {
    return this.keeper.has(execution.hash) || execution.program?.persistent === true;
  }

  /** Restarts happen after the failure is fully recorded (backoff set, execution gone). */
  private keeperLost(hash: string): void {
    if (this.keeper.has(hash)) queueMicrotask(() => this.keeper.lost(hash));
  }

  private onTransition(execution: Execution, from: ExecutionState, to: ExecutionState): void {
    this.metrics.transitions.inc({ to });
    log.debug('execution transition', { hash: shortHash(execution.hash), id: execution.id, from, to });
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message.split('\n')[0]!.slice(0, 200);
  return String(error).slice(0, 200);
}

/** Marks a promise's rejection as handled; the returned promise still rejects. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

function abortion(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** Awaits a promise unless the signal aborts first (the promise itself goes on). */
async function waitFor<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) throw signal.reason;
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
