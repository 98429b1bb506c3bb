// The status API server: HTTP/1.1 on a unix socket, never TCP. Local tools (the
// CLI, curl --unix-socket, a Prometheus agent via socat) reach it through file
// permissions, so the socket's mode is the access control.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmod } from 'node:fs/promises';
import { createLogger } from '../common/index.js';
import type { StatusProvider } from './types.js';
import { dispatch, errorReply, JSON_TYPE, type Reply } from './routes.js';
import {
  assertSocketPath,
  clearStaleSocket,
  ensureParentDir,
  errnoCode,
  removeSocketFile,
  socketFileId,
  type SocketFileId,
} from './socket-file.js';
import { DEFAULT_SOCKET_MODE } from './wire.js';

/** No endpoint takes a body; anything bigger than this is refused unread. */
const MAX_BODY_BYTES = 1024;
/** umask while binding: the socket is born owner-only and widened by chmod after. */
const BIND_UMASK = 0o177;

const log = createLogger('status');

export interface StatusServerOptions {
  /** Absolute path of the unix socket (e.g. /run/aleph-edge/status.sock). */
  path: string;
  /** File mode of the socket, applied after listen regardless of umask. Default 0o660. */
  mode?: number;
  provider: StatusProvider;
}

export interface StatusServer {
  readonly path: string;
  /** The listener's address: always the socket path (a string), never a TCP address. */
  address(): ReturnType<Server['address']>;
  /** Stops accepting, closes open connections and removes the socket file. Idempotent. */
  close(): Promise<void>;
}

export async function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const { path, provider } = options;
  const mode = options.mode ?? DEFAULT_SOCKET_MODE;
  assertSocketPath(path);
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new Error(`invalid status socket mode ${String(mode)} (expected 0..0o777)`);
  }

  await ensureParentDir(path);
  await clearStaleSocket(path);

  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 5_000 }, (req, res) => {
    void handle(req, res, provider);
  });
  await listen(server, path);

  let fileId: SocketFileId | undefined;
  try {
    await chmod(path, mode);
    fileId = await socketFileId(path);
  } catch (err) {
    await closeServer(server);
    throw err;
  }
  log.info('status socket listening', { path, mode: `0${mode.toString(8)}` });

  let closing: Promise<void> | undefined;
  return {
    path,
    address: () => server.address(),
    close: () => {
      closing ??= (async () => {
        await closeServer(server);
        await removeSocketFile(path, fileId);
      })();
      return closing;
    },
  };
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      // Lost a race with another process between the stale check and bind.
      if (errnoCode(err) === 'EADDRINUSE') reject(new Error(`another aleph-edge is already listening on ${path}`));
      else reject(new Error(`cannot listen on status socket ${path}: ${err.message}`));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // The bind of a unix socket happens synchronously inside listen(), so a
    // temporary umask closes the window in which the file would have default perms.
    const previous = trySetUmask(BIND_UMASK);
    try {
      server.listen({ path, exclusive: true });
    } finally {
      if (previous !== undefined) trySetUmask(previous);
    }
  });
}

/** process.umask(mask) is unavailable in worker threads; the chmod after listen still applies. */
function trySetUmask(mask: number): number | undefined {
  try {
    return process.umask(mask);
  } catch {
    return undefined;
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function handle(req: IncomingMessage, res: ServerResponse, provider: StatusProvider): Promise<void> {
  const method = req.method ?? 'GET';
  const pathname = (req.url ?? '/').split('?', 1)[0] ?? '/';
  if (!(await bodyWithinLimit(req))) {
    send(res, errorReply(413, `request body too large (max ${MAX_BODY_BYTES} bytes; no endpoint takes a body)`), true);
    return;
  }
  let status: number;
  let headers: Record<string, string>;
  let body: string;
  try {
    const reply = await dispatch(method, pathname, provider);
    ({ status, headers, body } = serialize(reply));
  } catch (err) {
    // The detail goes to the log only: the body must not leak stacks or paths.
    log.error('status request failed', { method, path: pathname, error: describe(err) });
    if (err instanceof Error && err.stack) log.debug('status request failure stack', { stack: err.stack });
    ({ status, headers, body } = serialize(errorReply(500, 'internal error')));
  }
  writeResponse(res, status, headers, body, false);
}

/** Reads (and discards) the request body; false once it exceeds the limit. */
function bodyWithinLimit(req: IncomingMessage): Promise<boolean> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (!Number.isFinite(declared) || declared > MAX_BODY_BYTES) return Promise.resolve(false);
  return new Promise((resolve) => {
    let size = 0;
    const done = (within: boolean) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      resolve(within);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.pause();
        done(false);
      }
    };
    const onEnd = () => done(true);
    const onError = () => done(false);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function serialize(reply: Reply): { status: number; headers: Record<string, string>; body: string } {
  if ('text' in reply) return { status: reply.status, headers: { 'Content-Type': reply.contentType }, body: reply.text };
  return {
    status: reply.status,
    headers: { ...reply.headers, 'Content-Type': JSON_TYPE },
    body: JSON.stringify(reply.json) + '\n',
  };
}

function send(res: ServerResponse, reply: Reply, closeConnection: boolean): void {
  const { status, headers, body } = serialize(reply);
  writeResponse(res, status, headers, body, closeConnection);
}

function writeResponse(
  res: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: string,
  closeConnection: boolean,
): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, {
    ...headers,
    'Content-Length': String(Buffer.byteLength(body)),
    'Cache-Control': 'no-store',
    // An unread body would be parsed as the next request: drop the connection instead.
    ...(closeConnection ? { Connection: 'close' } : {}),
  });
  res.end(body);
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
