// Messages between the primary (orchestrator, certificates, status) and the
// workers (listeners, TLS, proxying) over the cluster IPC channel.
import type { Settings } from '../config/index.js';
import type { Endpoint } from '../drivers/index.js';
import type { InheritedSocket, ListenerInfo } from '../edge/index.js';
import type { NodeStateMethod } from '../nodeapi/index.js';
import type { ControlMethod } from '../control/index.js';

export interface WireError {
  kind: 'not_found' | 'bad_request' | 'unavailable' | 'boot_failed' | 'upstream' | 'timeout' | 'internal';
  message: string;
  retryAfterS?: number;
  reason?: 'capacity' | 'queue_full' | 'draining' | 'backoff';
}

export interface WireLease {
  leaseId: number;
  hash: string;
  endpoint: Endpoint;
  requestTimeoutMs: number;
  codeRef?: string;
  /** How long the worker may keep the lease after its last request, for the next one. */
  lingerMs: number;
}

export interface WirePem {
  cert: string;
  key: string;
}

/** Worker -> primary requests that expect a reply with the same id. */
export type Call =
  | { type: 'acquire'; id: number; hash: string }
  | { type: 'certificate'; id: number; servername: string }
  | { type: 'challenge'; id: number; token: string }
  | { type: 'alpn-certificate'; id: number; servername: string }
  | { type: 'ocsp'; id: number; certificate: string; issuer: string | null }
  /** A node page's question for the primary's NodeState (verifyToken takes the token as `arg`). */
  | { type: 'node'; id: number; method: NodeStateMethod; arg?: string }
  /** /control/* answered by the primary's control service (JSON arguments). */
  | { type: 'control'; id: number; method: ControlMethod; args: unknown[] };

/** Worker -> primary notifications. */
export type Notice =
  | { type: 'cancel'; id: number }
  | { type: 'release'; leaseId: number; requests: number; idleMs: number }
  | { type: 'failure'; leaseId: number; reason: string; fatal: boolean }
  /** The lease now lingers unused (true), or a request uses it again (false). */
  | { type: 'linger'; leaseId: number; lingering: boolean }
  | { type: 'hello' }
  | { type: 'ready'; listeners: ListenerInfo[] }
  | { type: 'drained' };

export type WorkerMessage = Call | Notice | ({ type: 'reply' } & Reply);

export interface Reply {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: WireError;
}

/** Primary -> worker. Workers listen through the cluster module, which shares the primary's sockets. */
export type PrimaryMessage =
  | { type: 'init'; settings: Settings; version: string; ticketKeys: string; inherited: InheritedSocket[] }
  | { type: 'settings'; settings: Settings }
  | { type: 'ticket-keys'; ticketKeys: string }
  | { type: 'drain'; deadline: number }
  | { type: 'retired'; hash: string }
  | { type: 'metrics'; id: number }
  | ({ type: 'reply' } & Reply);
