// A VMM process (qemu, firecracker, the jailer) seen as an Instance: console output
// to the node log, a stop sequence (graceful request, then a forced one, then
// SIGKILL of the process group) and cleanup steps (temp dirs, tap leases, chroots)
// that run once the process has gone, before `exited` settles.

import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../common/index.js';
import { captureOutput, DEFAULT_OUTPUT_LIMITS, groupAlive, signalGroup, trackGroup, untrackGroup } from '../host/index.js';
import { DriverStartError, type Endpoint, type ExitInfo, type Instance, type InstanceNetwork, type Slot } from '../types.js';

export interface VmProcessHooks {
  /** Asks the guest to shut down (ACPI power button, Ctrl-Alt-Del). */
  graceful?: () => Promise<void>;
  /** Asks the VMM itself to exit (QMP quit) when the guest did not. */
  forced?: () => Promise<void>;
}

export type Cleanup = () => Promise<void> | void;

export class VmProcess implements Instance {
  readonly exited: Promise<ExitInfo>;
  readonly pid: number;
  /** The guest-link listener the driver opened for this VM's guest API, if any. */
  guestApi?: Endpoint;
  /** Set by a driver that saves the VM's state once the program is ready (Instance.ready). */
  ready?: () => void;
  /** True when the VM started from saved state. */
  restored = false;
  network?: InstanceNetwork;
  readyWhenStarted?: boolean;
  mappedPorts?: Record<string, { host: number; tcp: boolean; udp: boolean }>;
  private requested = false;
  private vmmExited = false;
  private stopping: Promise<void> | undefined;
  private cleanedUp = false;
  private readonly cleanups: Cleanup[] = [];
  private readonly vmmExit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    child: ChildProcess & { pid: number },
    readonly endpoint: Endpoint,
    private readonly stopGraceMs: number,
    private readonly log: Logger,
    private readonly hooks: VmProcessHooks,
  ) {
    this.pid = child.pid;
    trackGroup(this.pid);
    this.vmmExit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.vmmExited = true;
        resolve({ code, signal });
      });
    });
    this.exited = this.vmmExit.then(async ({ code, signal }) => {
      if (this.requested) this.log.info('vm stopped', { code, signal });
      else this.log.warn('vm exited unexpectedly', { code, signal });
      // Leftovers of the group (a jailer's child) must not outlive the instance.
      if (await groupAlive(this.pid)) signalGroup(this.pid, 'SIGKILL');
      untrackGroup(this.pid);
      await this.runCleanups();
      return { code, signal, requested: this.requested };
    });
  }

  /** Resolves when `check` does, false when the VMM exits first. */
  async whileRunning<T>(check: Promise<T>): Promise<T | false> {
    return Promise.race([check, this.vmmExit.then(() => false as const)]);
  }

  /** Spawns the VMM in its own process group with its console captured. */
  static async spawn(
    file: string,
    args: string[],
    options: { endpoint: Endpoint; stopGraceMs: number; log: Logger; console: Logger; hooks?: VmProcessHooks; cleanups?: Cleanup[]; cwd?: string; env?: NodeJS.ProcessEnv; onConsole?: (line: string) => void; output?: Slot['output'] },
  ): Promise<VmProcess> {
    const child = spawn(file, args, {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: options.cwd,
      env: options.env ?? { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' },
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err: NodeJS.ErrnoException) =>
        reject(new DriverStartError(err.code === 'ENOENT' ? `${file} not found` : `could not start ${file}: ${err.code ?? err.message}`)),
      );
    });
    child.on('error', () => undefined);
    captureOutput(
      child,
      {
        line: (stream, text) => {
          options.console.info(text, { stream: stream === 'stdout' ? 'console' : 'vmm' });
          if (stream === 'stdout') options.onConsole?.(text);
          options.output?.(stream, text);
        },
        dropped: (count) => options.console.warn('console output rate-limited, lines dropped', { dropped: count }),
      },
      DEFAULT_OUTPUT_LIMITS,
    );
    const vm = new VmProcess(child as ChildProcess & { pid: number }, options.endpoint, options.stopGraceMs, options.log, options.hooks ?? {});
    for (const step of options.cleanups ?? []) vm.onCleanup(step);
    return vm;
  }

  /**
   * Resolves true when `seen` resolves (e.g. the guest init printed that it started
   * the program), false when the VMM exits first or `ms` pass.
   */
  async launchedWithin(seen: Promise<void>, ms: number): Promise<boolean> {
    const timer = new AbortController();
    try {
      return await Promise.race([
        seen.then(() => true),
        this.vmmExit.then(() => false),
        sleep(ms, false, { signal: timer.signal }).catch(() => false),
      ]);
    } finally {
      timer.abort();
    }
  }

  /** Registers a cleanup step; steps run in reverse order of registration (at once when the VM is already gone). */
  onCleanup(step: Cleanup): void {
    if (this.cleanedUp) void Promise.resolve().then(step).catch((err: Error) => this.log.error('vm cleanup step failed', { error: err.message }));
    else this.cleanups.push(step);
  }

  stop(): Promise<void> {
    if (!this.vmmExited) this.requested = true;
    this.stopping ??= this.runStop();
    return this.stopping;
  }

  /** Ends the VMM at once (a VM that never served: a failed restore). */
  async kill(): Promise<void> {
    if (!this.vmmExited) {
      this.requested = true;
      signalGroup(this.pid, 'SIGKILL');
    }
    await this.exited;
  }

  private async runStop(): Promise<void> {
    if (!this.vmmExited && this.hooks.graceful) {
      await this.hooks.graceful().catch((err: Error) => this.log.debug('graceful shutdown request failed', { error: err.message }));
      await this.vmmExitWithin(this.stopGraceMs);
    }
    if (!this.vmmExited && this.hooks.forced) {
      this.log.warn('guest did not shut down in time, stopping the vm', { grace_ms: this.stopGraceMs });
      await this.hooks.forced().catch((err: Error) => this.log.debug('forced stop request failed', { error: err.message }));
      await this.vmmExitWithin(1000);
    }
    if (!this.vmmExited) {
      signalGroup(this.pid, 'SIGTERM');
      await this.vmmExitWithin(this.hooks.graceful ? 1000 : this.stopGraceMs);
    }
    if (!this.vmmExited) signalGroup(this.pid, 'SIGKILL');
    await this.exited;
  }

  private async vmmExitWithin(ms: number): Promise<void> {
    const timer = new AbortController();
    try {
      await Promise.race([this.vmmExit, sleep(ms, undefined, { signal: timer.signal }).catch(() => {})]);
    } finally {
      timer.abort();
    }
  }

  private async runCleanups(): Promise<void> {
    this.cleanedUp = true;
    for (const step of this.cleanups.splice(0).reverse()) {
      try {
        await step();
      } catch (err) {
        this.log.error('vm cleanup step failed', { error: (err as Error).message });
      }
    }
  }
}
