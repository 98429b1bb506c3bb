import type { Timer } from '../common/index.js';
import type { Instance, WarmVm } from '../drivers/index.js';
import { formatEndpoint } from '../drivers/index.js';
import type { Program } from '../programs/index.js';
import type { ExecutionInfo, ExecutionState, GuestSession } from './types.js';

// Legal transitions, in one place. `failed` and `stopped` are terminal.
const TRANSITIONS: Record<ExecutionState, readonly ExecutionState[]> = {
  starting: ['ready', 'stopping', 'failed'],
  ready: ['draining', 'stopping', 'failed'],
  draining: ['stopping', 'failed'],
  stopping: ['stopped', 'failed'],
  stopped: [],
  failed: [],
};

export class IllegalTransitionError extends Error {}

/** What started an execution: a request (lazily) or the operator/scheduler (start). */
export type BootOrigin = 'request' | 'operator';

/** One running (or booting) instance of a program, with its request accounting. */
export class Execution {
  state: ExecutionState = 'starting';
  program: Program | undefined;
  instance: Instance | undefined;
  /** A warm-pool VM set aside for this boot, until the driver claims it or it goes back. */
  warm: WarmVm | undefined;
  /** The guest API session, while the execution lives. */
  guest: GuestSession | undefined;
  private guestClosed: Promise<void> | undefined;
  readyAt: number | undefined;
  lastRequestAt: number | undefined;
  bootMs: number | undefined;
  requests = 0;
  inFlight = 0;
  /** Counted against max_vms and the memory budget: admission let it boot. */
  admitted = false;
  /** Of inFlight: leases a worker keeps with no request on them (linger). */
  lingering = 0;
  /** Requests waiting for this execution to become ready (bounded by hold_queue). */
  waiters = 0;
  lastError: string | undefined;
  /** Settles when the boot ends: resolves when ready, rejects with the boot error. */
  ready!: Promise<void>;
  /** Aborted to cancel a boot (timeout, drain, stop while starting). */
  readonly bootAbort = new AbortController();
  idleTimer: Timer | undefined;
  stopping: Promise<void> | undefined;
  /** While draining: called when the last in-flight request ends. */
  idleWaiters: Array<() => void> = [];

  constructor(
    readonly hash: string,
    readonly id: string,
    readonly driver: string,
    private readonly onTransition: (execution: Execution, from: ExecutionState, to: ExecutionState) => void,
    readonly startedAt: number = Date.now(),
    readonly origin: BootOrigin = 'request',
  ) {}

  transition(to: ExecutionState): void {
    const from = this.state;
    if (!TRANSITIONS[from].includes(to)) throw new IllegalTransitionError(`execution ${this.id}: ${from} -> ${to}`);
    this.state = to;
    this.onTransition(this, from, to);
  }

  /** True when nothing uses it: it may be evicted or reaped. */
  get idle(): boolean {
    return this.state === 'ready' && this.inFlight === 0 && this.waiters === 0;
  }

  /** Nothing but lingering leases: evictable once the workers give them back. */
  get onlyLingering(): boolean {
    return this.state === 'ready' && this.inFlight > 0 && this.inFlight === this.lingering && this.waiters === 0;
  }

  get memoryMib(): number {
    return this.program?.memoryMib ?? 0;
  }

  get lastUsedAt(): number {
    return this.lastRequestAt ?? this.readyAt ?? this.startedAt;
  }

  /** Ends the guest API session (every way an execution ends comes here); idempotent. */
  closeGuest(): Promise<void> {
    const guest = this.guest;
    if (guest) {
      this.guest = undefined;
      this.guestClosed = guest.close().catch(() => undefined);
    }
    // A second caller waits for the close the first one started.
    return this.guestClosed ?? Promise.resolve();
  }

  clearIdleTimer(): void {
    this.idleTimer?.cancel();
    this.idleTimer = undefined;
  }

  info(restarts: number): ExecutionInfo {
    const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());
    return {
      hash: this.hash,
      name: this.program?.name ?? '',
      state: this.state,
      driver: this.driver,
      endpoint: this.instance ? formatEndpoint(this.instance.endpoint) : '',
      guest_api: this.instance?.guestApi ? formatEndpoint(this.instance.guestApi) : '',
      pid: this.instance?.pid ?? null,
      started_at: new Date(this.startedAt).toISOString(),
      ready_at: iso(this.readyAt),
      last_request_at: iso(this.lastRequestAt),
      boot_ms: this.bootMs ?? null,
      requests: this.requests,
      in_flight: this.inFlight,
      memory_mib: this.memoryMib,
      vcpus: this.program?.vcpus ?? 0,
      restarts,
      last_error: this.lastError ?? null,
      ...(this.instance?.network ? { network: this.instance.network } : {}),
      kind: this.program?.launch.kind === 'machine' ? 'instance' : 'program',
      mapped_ports: this.instance?.mappedPorts ?? {},
    };
  }
}
