import type { Endpoint, InstanceNetwork } from '../drivers/index.js';
import type { Program } from '../programs/index.js';

/** A request's hold on a ready execution; release exactly once when the exchange ends. */
export interface Lease {
  hash: string;
  endpoint: Endpoint;
  /** Per-request timeout for this program (program override or node default). */
  requestTimeoutMs: number;
  /** Programs from the Aleph network: the code's ref (`Aleph-Program-Code-Ref`). */
  codeRef?: string;
  /**
   * Ends the hold. `requests` (default 1) is how many requests it served: a worker
   * process shares one lease among its concurrent requests for a program, and may
   * keep it a moment after its last request: `idleForMs` says how long ago that
   * request ended, so the idle timer counts from then.
   */
  release(requests?: number, idleForMs?: number): void;
  /**
   * Tells the orchestrator the exchange failed upstream. `fatal` means the program
   * no longer accepts connections (refused): its execution is replaced.
   */
  reportFailure(reason: string, fatal: boolean): void;
  /**
   * A worker keeps this lease with no request on it (its linger after the last one):
   * `true` while it lingers, `false` once a request uses it again. A lingering lease
   * does not make its execution busy: admission may evict it (the worker is told to
   * give it back first, docs/reliability.md).
   */
  linger?(lingering: boolean): void;
}

/** What edge/ asks of the orchestrator. Async on purpose (IPC seam for workers). */
export interface ExecutionGateway {
  /** Returns a lease on a ready execution, booting one if needed. Throws EdgeError subclasses. */
  acquire(hash: string, signal?: AbortSignal): Promise<Lease>;
  /** A lease right away when the program is warm, else undefined (then call acquire). */
  leaseIfReady(hash: string): Lease | undefined;
  /** Called when a program's execution stops taking new requests (stop, drain, crash, removal). */
  onRetire?(listener: (hash: string) => void): void;
}

export type ExecutionState = 'starting' | 'ready' | 'draining' | 'stopping' | 'stopped' | 'failed';

/** One execution as listed by the status API. */
export interface ExecutionInfo {
  hash: string;
  name: string;
  state: ExecutionState;
  driver: string;
  endpoint: string;
  /** The guest-link listener of this execution ('' when none): the only TCP listener a node opens besides its configured ones. */
  guest_api: string;
  pid: number | null;
  started_at: string;
  ready_at: string | null;
  last_request_at: string | null;
  boot_ms: number | null;
  requests: number;
  in_flight: number;
  memory_mib: number;
  vcpus: number;
  restarts: number;
  last_error: string | null;
  /** The VM's addresses and forwarded ports, when its driver gave it a network of its own (tap). */
  network?: InstanceNetwork;
  /** 'instance' for INSTANCE messages (a machine booting its own disk). */
  kind?: 'program' | 'instance';
  /** Instances: host ports forwarded to the VM, guest port -> { host, tcp, udp } (the reference's mapped_ports). */
  mapped_ports?: Record<string, { host: number; tcp: boolean; udp: boolean }>;
}

/** What the guest API gives one execution: its own socket, closed when the execution ends. */
export interface GuestSession {
  /** Unix socket of an HTTP server serving this program only (identity = the socket). */
  socket: string;
  /** Stops serving and removes the socket; idempotent. */
  close(): Promise<void>;
}

/**
 * Services a running program may call on the host (implemented by src/guestapi/,
 * wired in src/app/). Opened before the driver starts the program; the socket reaches
 * the driver as `slot.guestApi`.
 */
export interface GuestServices {
  open(program: Program, executionId: string): Promise<GuestSession>;
}
