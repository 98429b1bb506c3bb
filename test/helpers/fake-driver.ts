// A driver whose programs live on the fake clock: they start, answer their readiness
// probe, crash and stop when the test says (or after fake-clock delays), so the
// orchestrator's logic is tested without real processes racing real timers. It holds
// the orchestrator to the Driver contract: one start per execution id, stop()
// idempotent, `exited` settled exactly once and never rejected.

import assert from 'node:assert/strict';
import { DriverStartError, type Driver, type Endpoint, type ExitInfo, type Instance, type Slot, type WarmBooter, type WarmVm } from '../../src/drivers/index.js';
import type { ReadinessProbe } from '../../src/orchestrator/index.js';
import type { Program } from '../../src/programs/index.js';
import type { FakeClock } from './clock.js';

export interface FakeBehaviour {
  /** driver.start() rejects with DriverStartError carrying this message. */
  startFails?: string;
  /** The program answers its probe this long after start (fake ms); Infinity: never. Default 0. */
  readyAfterMs?: number;
  /** The program exits on its own with this code this long after start (fake ms). */
  exitAfterMs?: { ms: number; code: number };
  /** stop() completes only when the test calls instance.finishStop() (a slow VM shutdown). */
  slowStop?: boolean;
  /** The driver has a saved state for this program: it restores instead of using a warm VM. */
  restores?: boolean;
}

/**
 * A warm-pool VM on the fake clock: fits programs of its memory size; used once (the
 * driver claims it and its instance owns it from then on).
 */
export class FakeWarmVm implements WarmVm {
  claimed = false;
  /** The program attached to it, once claimed. */
  program: Program | undefined;
  stopCalls = 0;
  readonly exited: Promise<ExitInfo>;
  exitInfo: ExitInfo | undefined;
  private resolveExit!: (info: ExitInfo) => void;

  constructor(readonly memoryMib: number, readonly id: number) {
    this.exited = new Promise((resolve) => { this.resolveExit = resolve; });
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  fits(program: Program): boolean {
    return program.memoryMib === this.memoryMib;
  }

  stop(): Promise<void> {
    this.stopCalls++;
    assert.ok(!this.claimed, 'a claimed warm VM is stopped through its instance');
    this.end({ code: null, signal: 'SIGKILL', requested: true });
    return Promise.resolve();
  }

  /** The VM dies while waiting in the pool. */
  crash(): void {
    this.end({ code: 1, signal: null, requested: false });
  }

  claim(program: Program): void {
    assert.ok(!this.claimed, `warm VM ${this.id} claimed twice`);
    assert.ok(this.running, `warm VM ${this.id} claimed after it exited`);
    this.claimed = true;
    this.program = program;
  }

  end(info: ExitInfo): void {
    if (this.exitInfo) return;
    this.exitInfo = info;
    this.resolveExit(info);
  }
}

export interface FakeWarmBehaviour {
  /** Memory of each warm VM. */
  memoryMib: number;
  /** A warm VM is booted this long (fake ms) after boot() is called. Default 0. */
  bootMs?: number;
  /** boot() rejects with this message. */
  fails?: string;
}

export class FakeInstance implements Instance {
  readonly endpoint: Endpoint;
  readonly pid: number;
  readonly exited: Promise<ExitInfo>;
  /** True once the program answers on its endpoint. */
  listening = false;
  exitInfo: ExitInfo | undefined;
  stopCalls = 0;
  /** How often the orchestrator called ready() (a VM driver may save the VM's state then). */
  readyCalls = 0;
  /** The warm-pool VM this program was attached to, if any (its exit is this instance's). */
  warm: FakeWarmVm | undefined;
  fromPool = false;
  private resolveExit!: (info: ExitInfo) => void;
  private listeners: Array<() => void> = [];
  private stopping: Promise<void> | undefined;
  private releaseStop: (() => void) | undefined;

  constructor(readonly program: Program, readonly slot: Slot, pid: number, private readonly behaviour: FakeBehaviour) {
    this.pid = pid;
    this.endpoint = { kind: 'unix', path: `/fake/${slot.executionId}.sock` };
    this.exited = new Promise((resolve) => { this.resolveExit = resolve; });
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  ready(): void {
    this.readyCalls++;
  }

  /** The program starts answering (its probe resolves). */
  listen(): void {
    if (!this.running || this.listening) return;
    this.listening = true;
    for (const wake of this.listeners.splice(0)) wake();
  }

  /** The program dies on its own. */
  crash(code: number): void {
    this.end({ code, signal: null, requested: false });
  }

  stop(): Promise<void> {
    this.stopCalls++;
    this.stopping ??= this.exitInfo
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
        const done = () => {
          this.end({ code: null, signal: 'SIGTERM', requested: true });
          resolve();
        };
        if (this.behaviour.slowStop) this.releaseStop = done;
        else queueMicrotask(done);
      });
    return this.stopping;
  }

  /** Completes a slowStop program's stop. */
  finishStop(): void {
    assert.ok(this.releaseStop, 'finishStop without a stop in progress');
    this.releaseStop();
  }

  /** Resolves once the program listens. */
  answered(): Promise<void> {
    return this.listening ? Promise.resolve() : new Promise((resolve) => this.listeners.push(resolve));
  }

  private end(info: ExitInfo): void {
    if (this.exitInfo) return; // a process exits once
    this.warm?.end(info);
    this.exitInfo = info;
    this.listening = false;
    this.resolveExit(info);
  }
}

export class FakeDriver implements Driver {
  readonly name = 'fake';
  readonly instances: FakeInstance[] = [];
  /** Hashes of every start() call, failed ones included. */
  readonly startCalls: string[] = [];
  private readonly behaviours = new Map<string, FakeBehaviour>();
  private readonly ids = new Set<string>();
  private pids = 1000;
  /** Every warm VM booted, in boot order. */
  readonly warmVms: FakeWarmVm[] = [];
  /** boot() calls of the warm pool, failed and aborted ones included. */
  warmBoots = 0;
  readonly prewarm?: WarmBooter;

  constructor(private readonly clock: FakeClock, warm?: FakeWarmBehaviour) {
    if (warm) this.prewarm = this.warmBooter(warm);
  }

  /** Warm VMs waiting for a program (booted, unclaimed, running). */
  waitingWarm(): FakeWarmVm[] {
    return this.warmVms.filter((vm) => vm.running && !vm.claimed);
  }

  private warmBooter(warm: FakeWarmBehaviour): WarmBooter {
    return {
      memoryMib: warm.memoryMib,
      boot: (signal) => {
        this.warmBoots++;
        return new Promise<WarmVm>((resolve, reject) => {
          if (warm.fails) {
            reject(new DriverStartError(warm.fails));
            return;
          }
          const timer = this.clock.after(warm.bootMs ?? 0, () => {
            const vm = new FakeWarmVm(warm.memoryMib, this.warmVms.length);
            this.warmVms.push(vm);
            resolve(vm);
          });
          signal.addEventListener('abort', () => {
            timer.cancel();
            reject(signal.reason);
          }, { once: true });
        });
      },
    };
  }

  /** How the program with this hash behaves from its next start on. */
  behave(hash: string, behaviour: FakeBehaviour): void {
    this.behaviours.set(hash, behaviour);
  }

  async start(program: Program, slot: Slot): Promise<Instance> {
    assert.ok(!this.ids.has(slot.executionId), `execution id ${slot.executionId} started twice`);
    this.ids.add(slot.executionId);
    this.startCalls.push(program.hash);
    const behaviour = this.behaviours.get(program.hash) ?? {};
    if (behaviour.startFails) throw new DriverStartError(behaviour.startFails);
    const instance = new FakeInstance(program, slot, this.pids++, behaviour);
    if (slot.warm && !behaviour.restores) {
      assert.ok(slot.warm instanceof FakeWarmVm, 'a warm VM this driver did not boot');
      assert.ok(slot.warm.fits(program), 'the orchestrator set aside a warm VM the program does not fit');
      slot.warm.claim(program);
      instance.warm = slot.warm;
      instance.fromPool = true;
    }
    this.instances.push(instance);
    const readyAfter = behaviour.readyAfterMs ?? 0;
    if (readyAfter === 0) instance.listen();
    else if (Number.isFinite(readyAfter)) this.clock.after(readyAfter, () => instance.listen());
    if (behaviour.exitAfterMs) {
      const { ms, code } = behaviour.exitAfterMs;
      this.clock.after(ms, () => instance.crash(code));
    }
    return instance;
  }

  /** Instances of one program, in start order. */
  of(hash: string): FakeInstance[] {
    return this.instances.filter((i) => i.program.hash === hash);
  }

  /** start() calls for the program, failed ones included. */
  starts(hash: string): number {
    return this.startCalls.filter((h) => h === hash).length;
  }

  running(): FakeInstance[] {
    return this.instances.filter((i) => i.running);
  }

  /** A readiness probe as strict as the HTTP one: resolves when the program answers, rejects with the signal's reason. */
  readonly probe: ReadinessProbe = (endpoint, { signal }) => {
    const instance = this.instances.find((i) => endpoint.kind === 'unix' && i.endpoint.kind === 'unix' && i.endpoint.path === endpoint.path);
    assert.ok(instance, 'probe of an endpoint no driver start returned');
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      void instance.answered().then(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  };
}
