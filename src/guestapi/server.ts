// One execution's guest API: an HTTP server on its own unix socket. The program it
// serves is fixed when the socket is made, so every cache call is namespaced by a
// hash the guest cannot choose. Routes (docs/guest-api.md):
//   GET    /cache/<key>   | GET  /cache/get/<key>          value, or 404
//   PUT    /cache/<key>   | POST /cache/set/<key>          body = value; `true`
//   DELETE /cache/<key>   | POST /cache/remove/<key>       keys removed (0 or 1)
//   GET    /cache/?pattern=<glob> | GET /cache/keys?pattern=   JSON list of keys
//   GET    /api/v0/messages.json, /api/v0/messages/<hash>, /api/v0/storage/raw/<hash>
//   /sign, /properties, pubsub posts: 501 (remote signing is not offered)
// The /cache/<key> forms are what aleph-sdk's VmCache sends; the verb forms are
// aliases (so `/cache/keys` lists: a key named "keys" is read with /cache/get/keys).

import http from 'node:http';
import { chmod, rm } from 'node:fs/promises';
import { createLogger, shortHash } from '../common/index.js';
import type { Counter } from '../metrics/index.js';
import { CacheKeyError, CacheLimitError, type ProgramCache } from './cache.js';
import { AlephPassthrough, apiRoute, reply, RouteError } from './passthrough.js';
import { RedisReplyError, RedisUnavailableError } from './redis.js';

const log = createLogger('guestapi');

export interface SessionLimits {
  maxValueBytes: number;
  maxConnections: number;
  idleTimeoutMs: number;
}

const SIGNING_REFUSED = 'remote signing is not available on this node (aleph-edge does not hold keys for programs): sign messages in the program with its own key';

type CacheCall =
  | { op: 'get' | 'set' | 'remove'; key: string }
  | { op: 'keys'; pattern: string };

/** The cache call of a request, undefined when the path is not a cache path. */
function cacheCall(method: string, pathname: string, query: URLSearchParams): CacheCall | 'method' | undefined {
  if (pathname === '/cache' || pathname === '/cache/' || pathname === '/cache/keys') {
    return method === 'GET' || method === 'HEAD' ? { op: 'keys', pattern: query.get('pattern') ?? '*' } : 'method';
  }
  const verb = /^\/cache\/(get|set|remove)\/([^/]*)$/.exec(pathname);
  if (verb) {
    const op = verb[1] as 'get' | 'set' | 'remove';
    const allowed = op === 'get' ? ['GET', 'HEAD'] : op === 'set' ? ['POST', 'PUT'] : ['POST', 'DELETE'];
    return allowed.includes(method) ? { op, key: decode(verb[2]!) } : 'method';
  }
  const plain = /^\/cache\/([^/]*)$/.exec(pathname);
  if (plain) {
    const key = decode(plain[1]!);
    if (method === 'GET' || method === 'HEAD') return { op: 'get', key };
    if (method === 'PUT') return { op: 'set', key };
    if (method === 'DELETE') return { op: 'remove', key };
    return 'method';
  }
  return pathname.startsWith('/cache/') ? { op: 'get', key: '' } : undefined;
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return '\0'; // rejected by the key check
  }
}

export class GuestSessionServer {
  private readonly server: http.Server;
  private closing: Promise<void> | undefined;

  constructor(
    readonly socket: string,
    private readonly program: string,
    private readonly cache: ProgramCache,
    private readonly api: AlephPassthrough,
    private readonly limits: SessionLimits,
    private readonly requests?: Counter,
  ) {
    this.server = http.createServer({ maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 0, keepAliveTimeout: 5_000 }, (req, res) => {
      res.once('close', () => this.requests?.inc({ route: routeLabel(req.method ?? '', req.url ?? ''), code: String(res.statusCode) }));
      this.handle(req, res).catch((error: unknown) => {
        log.error('guest API request failed', { hash: shortHash(program), error: error instanceof Error ? error.message : String(error) });
        reply(res, 500, 'internal error');
      });
    });
    this.server.maxConnections = limits.maxConnections;
    // No traffic on a connection for this long ends it (a guest cannot hold one forever).
    this.server.timeout = limits.idleTimeoutMs;
    this.server.on('clientError', (_error, socket) => socket.destroy());
  }

  async listen(): Promise<void> {
    await rm(this.socket, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.socket, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    await chmod(this.socket, 0o600);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeAllConnections();
      await closed;
      await rm(this.socket, { force: true });
    })();
    return this.closing;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://guest');
    } catch {
      return reply(res, 400, 'bad request target', { connection: 'close' });
    }
    const call = cacheCall(method, url.pathname, url.searchParams);
    if (call === 'method') return reply(res, 405, `${method} is not allowed on ${url.pathname}`);
    if (call) return this.serveCache(call, req, res);

    if (url.pathname === '/sign' || url.pathname === '/properties' || /^\/api\/v0\/(ipfs|p2p)\/pubsub\/pub$/.test(url.pathname)) {
      req.resume();
      return reply(res, 501, SIGNING_REFUSED);
    }
    let route;
    try {
      route = apiRoute(url.pathname, url.search);
    } catch (error) {
      if (error instanceof RouteError) return reply(res, 400, error.message);
      throw error;
    }
    if (!route) {
      req.resume();
      return reply(res, 404, 'not available through the guest API: read-only /api/v0/messages.json, /api/v0/messages/<hash>, /api/v0/storage/raw/<hash> and /cache/... are');
    }
    if (method !== 'GET' && method !== 'HEAD') return reply(res, 405, 'the Aleph API is read-only here');
    await this.api.serve(route, req, res);
  }

  private async serveCache(call: CacheCall, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      switch (call.op) {
        case 'keys':
          return json(res, await this.cache.keys(this.program, call.pattern));
        case 'get': {
          const value = await this.cache.get(this.program, call.key);
          if (!value) return reply(res, 404, 'No such key in cache');
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': value.length, 'cache-control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : value);
          return;
        }
        case 'set': {
          const value = await readBody(req, this.limits.maxValueBytes);
          if (value === undefined) return reply(res, 413, `value is larger than the ${this.limits.maxValueBytes}-byte limit`, { connection: 'close' });
          return json(res, await this.cache.set(this.program, call.key, value));
        }
        case 'remove':
          return json(res, await this.cache.remove(this.program, call.key));
      }
    } catch (error) {
      if (error instanceof CacheKeyError) return reply(res, 400, error.message);
      if (error instanceof CacheLimitError) return reply(res, error.kind === 'value_size' ? 413 : 409, error.message);
      if (error instanceof RedisUnavailableError || error instanceof RedisReplyError) {
        return reply(res, 503, 'cache unavailable (its Redis cannot be reached); try again later', { 'retry-after': 1 });
      }
      throw error;
    }
  }
}

/** A bounded label for metrics (never the key or the hash). */
function routeLabel(method: string, target: string): string {
  const pathname = target.split('?')[0] ?? '';
  if (pathname.startsWith('/cache')) {
    const call = cacheCall(method, pathname, new URLSearchParams());
    return call && call !== 'method' ? `cache_${call.op}` : 'cache_other';
  }
  if (pathname.startsWith('/api/v0/')) return pathname.includes('pubsub') ? 'signing' : 'aleph_api';
  if (pathname === '/sign' || pathname === '/properties') return 'signing';
  return 'other';
}

function json(res: http.ServerResponse, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}

/** The whole body, or undefined when it exceeds the cap (the rest is not read). */
async function readBody(req: http.IncomingMessage, maxBytes: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}
