// What crosses between the listener (edge, maybe in a worker) and the control service
// (in the process that owns the orchestrator): plain JSON, so it can cross IPC.

import type { ExecutionInfo, KeepReason, KeptProgram, Lease, LogEntry, StopReason } from '../orchestrator/index.js';

export interface ControlRequest {
  method: string;
  /** Path only (no query), as received. */
  path: string;
  /** The query string without '?', '' when none. */
  query: string;
  /** Lowercase names; only those /control/* reads. */
  headers: Record<string, string>;
  /** The body, base64 (signatures cover its exact bytes). */
  body: string;
}

export interface ControlReply {
  status: number;
  contentType: 'application/json' | 'text/plain; charset=utf-8';
  body: string;
}

/** A WebSocket client's first message, checked before any log line is sent. */
export type StreamAuth = { ok: true; hash: string } | { ok: false; reason: string };

export interface LogBatch {
  entries: Array<Pick<LogEntry, 'timestamp' | 'stream' | 'line' | 'seq'>>;
  /** False once the program has no running execution (the stream then ends). */
  running: boolean;
}

/** The control service as the listener sees it (local, or over IPC in a worker). */
export interface ControlGateway {
  request(request: ControlRequest): Promise<ControlReply>;
  /** Checks a stream_logs client's credentials for the program at `path`. */
  authorizeStream(path: string, auth: unknown): Promise<StreamAuth>;
  /** Lines with seq > `after` of a program, once authorized. */
  logsAfter(hash: string, after: number): Promise<LogBatch>;
}

export const CONTROL_METHODS = ['request', 'authorizeStream', 'logsAfter'] as const satisfies ReadonlyArray<keyof ControlGateway>;
export type ControlMethod = (typeof CONTROL_METHODS)[number];

/** What control asks of the orchestrator. */
export interface ControlTarget {
  keep(hash: string, reason: KeepReason): Promise<void>;
  unkeep(hash: string): Promise<void>;
  kept(): KeptProgram[];
  stop(hash: string, reason?: StopReason): Promise<boolean>;
  /** Removes what the program keeps between executions (an instance's disk). */
  erase(hash: string): Promise<boolean>;
  acquire(hash: string, signal?: AbortSignal): Promise<Lease>;
  list(): ExecutionInfo[];
  logs(hash: string): LogEntry[];
}
