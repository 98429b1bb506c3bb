// What travels over the status socket. Field names are snake_case on the wire
// (docs/design.md, "Status socket"); in-process types that use camelCase are mapped here,
// in one place, so the server and the client cannot drift apart.

import type { CertInfo } from '../tls/index.js';

/** Where the CLI looks for the socket when neither --socket nor ALEPH_EDGE_SOCKET is given. */
export const DEFAULT_STATUS_SOCKET = '/run/aleph-edge/status.sock';

/** Default file mode of the socket: owner and group may connect, nobody else. */
export const DEFAULT_SOCKET_MODE = 0o660;

/** One of the node's listening sockets, as `GET /status` gives it (edge's ListenerInfo). */
export interface ListenerRecord {
  protocol: 'https' | 'http';
  /** The bound IP address; absent for an inherited socket that is not TCP. */
  address?: string;
  port?: number;
  /** The descriptor systemd passed (socket activation). */
  fd?: number;
}

/** One certificate as served by `GET /certs`. */
export interface CertRecord {
  host: string;
  source: CertInfo['source'];
  not_before: string;
  not_after: string;
  issuer: string;
  /** Present after a failed issuance or renewal (acme mode). */
  renewal?: { failures: number; last_error?: string; last_attempt?: string; next_attempt?: string };
}

/** Body of a successful `POST /vms/<hash>/stop`. */
export interface StopResult {
  stopped: string;
}

/** Body of a successful `POST /instances/<hash>/<start|stop|erase>`; `changed` false: nothing to do. */
export interface InstanceResult {
  hash: string;
  action: 'start' | 'stop' | 'erase';
  changed: boolean;
}

/** Body of an accepted `POST /drain`. */
export interface DrainResult {
  draining: true;
}

/** Body of every non-2xx JSON response. */
export interface ErrorBody {
  error: string;
}

export function certToWire(cert: CertInfo): CertRecord {
  return {
    host: cert.host,
    source: cert.source,
    not_before: cert.notBefore,
    not_after: cert.notAfter,
    issuer: cert.issuer,
    ...(cert.renewal ? {
      renewal: {
        failures: cert.renewal.failures,
        last_error: cert.renewal.lastError,
        last_attempt: cert.renewal.lastAttempt,
        next_attempt: cert.renewal.nextAttempt,
      },
    } : {}),
  };
}

export function certFromWire(record: CertRecord): CertInfo {
  return {
    host: record.host,
    source: record.source,
    notBefore: record.not_before,
    notAfter: record.not_after,
    issuer: record.issuer,
    ...(record.renewal ? {
      renewal: {
        failures: record.renewal.failures,
        lastError: record.renewal.last_error,
        lastAttempt: record.renewal.last_attempt,
        nextAttempt: record.renewal.next_attempt,
      },
    } : {}),
  };
}
