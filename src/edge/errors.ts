import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BootFailedError, EdgeError, UnavailableError, createLogger, type EdgeErrorCode } from '../common/index.js';

const log = createLogger('edge');

export interface ErrorReply {
  status: number;
  message: string;
  retryAfterS?: number;
  /** Known error kind for metrics ('internal' for anything unexpected). */
  kind: string;
}

/** The one table of statuses: every error code the components throw, and what the client gets. */
const STATUS: Readonly<Record<EdgeErrorCode, number>> = {
  not_found: 404,
  bad_request: 400,
  too_large: 413,
  unavailable: 503,
  boot_failed: 502,
  upstream: 502,
  timeout: 504,
};

/** The one place where component errors become HTTP statuses (docs/design.md, Errors and statuses). */
export function replyFor(error: unknown): ErrorReply {
  if (error instanceof EdgeError) {
    const reply: ErrorReply = { status: STATUS[error.code], message: error.message, kind: error.code };
    // 503 and 502-after-a-failed-boot tell the client when to come back.
    if (error instanceof UnavailableError) return { ...reply, retryAfterS: error.retryAfterS, kind: error.reason };
    if (error instanceof BootFailedError) return { ...reply, retryAfterS: error.retryAfterS ?? 1 };
    return reply;
  }
  // Anything else is our bug: log it in full, show the client nothing of it.
  log.error('internal error', { error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  return { status: 500, message: 'internal error', kind: 'internal' };
}

function headersFor(reply: ErrorReply, body: string): Record<string, string | number> {
  const headers: Record<string, string | number> = {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  };
  if (reply.retryAfterS !== undefined) headers['retry-after'] = reply.retryAfterS;
  return headers;
}

export function writeHttpError(res: ServerResponse, reply: ErrorReply): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = `${reply.status} ${reply.message}\n`;
  const headers = headersFor(reply, body);
  // After a malformed request the connection state is suspect: do not reuse it.
  // (HTTP/2 has no Connection header: the stream ends, the connection stays.)
  if ((reply.status === 400 || reply.status === 413) && res.req.httpVersionMajor < 2) headers.connection = 'close';
  res.writeHead(reply.status, headers);
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** Error reply on a raw socket (a refused WebSocket upgrade), then close. */
export function writeSocketError(socket: Duplex, reply: ErrorReply): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${reply.status} ${reply.message}\n`;
  const head = [`HTTP/1.1 ${reply.status} ${STATUS_TEXT[reply.status] ?? 'Error'}`];
  for (const [name, value] of Object.entries(headersFor(reply, body))) head.push(`${name}: ${value}`);
  head.push('connection: close');
  socket.end(head.join('\r\n') + '\r\n\r\n' + body);
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 404: 'Not Found', 413: 'Payload Too Large', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};
