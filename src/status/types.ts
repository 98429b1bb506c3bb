import type { ExecutionInfo } from '../orchestrator/index.js';
import type { CertInfo } from '../tls/index.js';
import type { ListenerRecord } from './wire.js';

export interface StatusSnapshot {
  version: string;
  uptime_s: number;
  listeners: ListenerRecord[];
  draining: boolean;
  vms: ExecutionInfo[];
  certs: { count: number; by_source: Record<string, number> };
  counters: Record<string, number>; // requests, errors by status class, boots, ...
  /** Worker processes serving requests ([] when everything runs in one process). */
  workers?: Array<{ index: number; pid: number | undefined; leases: number }>;
}

export interface LoginInfo {
  token: string;
  url: string;
}

export type InstanceAction = 'start' | 'stop' | 'erase';

export interface ReloadResult {
  ok: boolean;
  errors: string[]; // 'file:line:col: message' lines when !ok
}

/** What the status server reads and controls; implemented by the node assembly. */
export interface StatusProvider {
  status(): Promise<StatusSnapshot>;
  vms(): Promise<ExecutionInfo[]>;
  certs(): Promise<CertInfo[]>;
  metrics(): Promise<string>;
  /** The node's login token and the URL that logs in with it (only ever given out here). */
  login?(): Promise<LoginInfo>;
  /** Stops the program's execution; false when none is running. */
  stopVm(hash: string): Promise<boolean>;
  /**
   * An instance's lifecycle (INSTANCE messages): start it now, stop it (ACPI
   * shutdown), erase its disk (stopping it first). Resolves whether anything was done
   * (false: already running / not running / nothing to erase).
   */
  instance?(action: InstanceAction, hash: string): Promise<boolean>;
  reload(): Promise<ReloadResult>;
  /** Starts draining; resolves once draining has begun (the process exits later). */
  drain(): Promise<void>;
}
