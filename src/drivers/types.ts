import type { Program } from '../programs/index.js';

/** Where the proxy reaches a running program. */
export type Endpoint =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'unix'; path: string };

/** Per-execution identity handed to a driver (used for names, logs, resources). */
export interface Slot {
  executionId: string; // unique per execution, e.g. '<short hash>-<n>'
  /**
   * The execution's guest API (src/guestapi/): an HTTP server on this unix socket,
   * for this program only. Drivers make it reachable from the program with
   * openGuestLink (guest-link.ts) and set ALEPH_API_HOST & co (guestEnv). Absent
   * when the guest API is disabled.
   */
  guestApi?: { socket: string };
  /**
   * Receives each line the program prints (process: stdout/stderr; VMs: the serial
   * console as stdout, the VMM's own messages as stderr), after the node log's rate
   * limit. The orchestrator keeps them per program for its owner.
   */
  output?: (stream: OutputStream, line: string) => void;
  /**
   * A VM from the warm pool the orchestrator set aside for this execution (its size
   * fits the program). The driver attaches the program to it and sets its `claimed`,
   * or leaves it (a saved state to restore beats the pool): the orchestrator then
   * takes it back. Absent when the pool has none that fits.
   */
  warm?: WarmVm;
}

/**
 * A VM booted with no program, waiting in the warm pool (docs/warm-pool.md). Used
 * once: a VM a program was attached to never returns to the pool.
 */
export interface WarmVm {
  readonly memoryMib: number;
  /** True once a program was attached (then its Instance owns the VM). */
  readonly claimed: boolean;
  /** Whether this program can be attached (same runtime, memory, vCPUs...). */
  fits(program: Program): boolean;
  /** Ends the unused VM; idempotent. */
  stop(): Promise<void>;
  /** Settles once the VM has exited, for whatever reason. Never rejects. */
  exited: Promise<ExitInfo>;
}

/** What a driver that can keep VMs warm offers the orchestrator's pool. */
export interface WarmBooter {
  /** The memory each pooled VM holds (admission counts it). */
  readonly memoryMib: number;
  /** Boots one VM with no program; resolves once it waits for one. The signal kills it. */
  boot(signal: AbortSignal): Promise<WarmVm>;
}

export type OutputStream = 'stdout' | 'stderr';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the exit was caused by instance.stop(). */
  requested: boolean;
}

/** A started program. Readiness is checked by the orchestrator, not the driver. */
export interface Instance {
  endpoint: Endpoint;
  pid: number | undefined;
  /** Where the program reaches the node's guest API (a guest-link listener the driver opened), if any. */
  guestApi?: Endpoint;
  /**
   * Called once, when the orchestrator has found the program ready (its first HTTP
   * answer). A VM driver may save the VM's state then, for later starts to restore.
   */
  ready?(): void;
  /** True when this instance was restored from saved state rather than booted. */
  restored?: boolean;
  /** True when the program was attached to a warm-pool VM (Slot.warm) rather than booted. */
  fromPool?: boolean;
  /** The VM's own addresses and forwarded ports (tap networking), for the node API's executions lists. */
  network?: InstanceNetwork;
  /** Stops the program (graceful, then forced after the grace period); idempotent. */
  stop(): Promise<void>;
  /** Settles once the program has exited, for whatever reason. Never rejects. */
  exited: Promise<ExitInfo>;
  /**
   * Ready as soon as start() resolved (an instance: its VM runs; what it serves is its
   * owner's business), so the orchestrator does not probe HTTP.
   */
  readyWhenStarted?: boolean;
  /** Host ports forwarded to the guest (instances): guest port -> { host, tcp, udp }, as the node API shows them. */
  mappedPorts?: Record<string, { host: number; tcp: boolean; udp: boolean }>;
}

export interface InstanceNetwork {
  ipv4Network: string; // the VM's IPv4 subnet, "172.16.0.4/30"
  ipv4: string; // the VM's IPv4 address
  ipv6Network: string | null; // its /124
  ipv6: string | null; // the address the network's monitor pings
  hostIpv4: string | null; // the node's uplink IPv4, where forwarded host ports are reached
  /** VM port -> { host, tcp, udp }, the reference's mapped_ports. */
  mappedPorts: Record<string, { host: number; tcp: boolean; udp: boolean }>;
}

export interface Driver {
  readonly name: string;
  /** Launches the program; rejects with DriverStartError when it cannot be launched. */
  start(program: Program, slot: Slot): Promise<Instance>;
  /**
   * Removes what the program keeps between executions (an instance's disk and ports);
   * it must not be running. Resolves false when there was nothing. Drivers that keep
   * nothing leave it out.
   */
  erase?(program: Program): Promise<boolean>;
  /** Present when this driver, as configured, can keep VMs warm for programs not seen yet. */
  readonly prewarm?: WarmBooter;
}

/** The driver could not launch the program (missing binary, bad image...). */
export class DriverStartError extends Error {
  override readonly name = 'DriverStartError';
}

export function formatEndpoint(endpoint: Endpoint): string {
  return endpoint.kind === 'tcp' ? `${endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}` : `unix:${endpoint.path}`;
}
