// Read-only Aleph API calls a program may make, passed through to programs.aleph_api:
//   GET /api/v0/messages.json?<query>    query rebuilt from its parsed pairs (bounded)
//   GET /api/v0/messages/<item hash>
//   GET /api/v0/storage/raw/<item hash>
// What the node already holds is served from its caches: a blob from the artifact
// cache (content-addressed, hash-checked when it was downloaded), a message from the
// message cache (immutable under its hash; FORGETs remove it). Everything else goes
// upstream: no client header is forwarded, the answer is streamed with a size cap
// and the whole exchange has a deadline.

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { once } from 'node:events';
import { fetch, type Response } from 'undici';

/** What the node's Aleph program source already has (src/programs/aleph). */
export interface AlephReadCache {
  /** A message by item hash from the node's message cache, or undefined. */
  message(hash: string): Promise<unknown | undefined>;
  /** The path of a complete blob in the artifact cache, or undefined. */
  blob(itemHash: string): string | undefined;
}

export interface PassthroughOptions {
  api: string; // base URL
  timeoutMs: number;
  maxBytes: number;
  cache?: AlephReadCache;
}

export type ApiRoute =
  | { kind: 'messages'; query: URLSearchParams }
  | { kind: 'message'; hash: string }
  | { kind: 'raw'; hash: string };

const ITEM_HASH = /^[A-Za-z0-9]{32,128}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const MAX_QUERY_PAIRS = 32;
const MAX_QUERY_CHARS = 4096;

/** The API route of a path, undefined when it is not one we pass through; throws RouteError on bad input. */
export function apiRoute(pathname: string, search: string): ApiRoute | undefined {
  if (pathname === '/api/v0/messages.json') {
    if (search.length > MAX_QUERY_CHARS) throw new RouteError('query string too long');
    const query = new URLSearchParams(search);
    if ([...query.keys()].length > MAX_QUERY_PAIRS) throw new RouteError('too many query parameters');
    for (const key of query.keys()) if (!/^[A-Za-z_]{1,40}$/.test(key)) throw new RouteError('bad query parameter name');
    return { kind: 'messages', query };
  }
  const message = /^\/api\/v0\/messages\/([^/]+)$/.exec(pathname);
  if (message) {
    if (!ITEM_HASH.test(message[1]!)) throw new RouteError('invalid item hash');
    return { kind: 'message', hash: message[1]! };
  }
  const raw = /^\/api\/v0\/storage\/raw\/([^/]+)$/.exec(pathname);
  if (raw) {
    if (!ITEM_HASH.test(raw[1]!)) throw new RouteError('invalid item hash');
    return { kind: 'raw', hash: raw[1]! };
  }
  return undefined;
}

export class RouteError extends Error {
  override readonly name = 'RouteError';
}

export class AlephPassthrough {
  private readonly base: string;

  constructor(private readonly options: PassthroughOptions) {
    this.base = options.api.replace(/\/+$/, '');
  }

  async serve(route: ApiRoute, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (await this.fromCache(route, req, res)) return;
    const url = new URL(`${this.base}${this.upstreamPath(route)}`);
    const abort = new AbortController();
    const onClose = () => abort.abort();
    res.on('close', onClose);
    const timer = setTimeout(() => abort.abort(new Error('timeout')), this.options.timeoutMs);
    try {
      let response: Response;
      try {
        response = await fetch(url, { signal: abort.signal, headers: { accept: route.kind === 'raw' ? '*/*' : 'application/json' }, redirect: 'follow' });
      } catch {
        if (res.destroyed) return;
        return abort.signal.aborted
          ? reply(res, 504, `Aleph API did not answer within ${this.options.timeoutMs} ms`)
          : reply(res, 502, 'Aleph API unreachable');
      }
      if (response.status >= 500) {
        await response.body?.cancel();
        return reply(res, 502, `Aleph API answered HTTP ${response.status}`);
      }
      const declared = Number(response.headers.get('content-length') ?? NaN);
      if (Number.isFinite(declared) && declared > this.options.maxBytes) {
        await response.body?.cancel();
        return reply(res, 502, `Aleph API answer is larger than the ${this.options.maxBytes}-byte limit`);
      }
      const headers: Record<string, string | number> = { 'content-type': response.headers.get('content-type') ?? 'application/octet-stream', 'cache-control': 'no-store' };
      if (Number.isFinite(declared)) headers['content-length'] = declared;
      res.writeHead(response.status, headers);
      if (req.method === 'HEAD' || !response.body) {
        await response.body?.cancel();
        res.end();
        return;
      }
      let size = 0;
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          size += chunk.byteLength;
          // Headers are gone: cutting the connection is the only way to say "incomplete".
          if (size > this.options.maxBytes) throw new Error('too large');
          if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
          if (res.destroyed) throw new Error('client gone');
        }
        res.end();
      } catch {
        abort.abort();
        res.destroy();
      }
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
    }
  }

  private upstreamPath(route: ApiRoute): string {
    switch (route.kind) {
      case 'messages': {
        const query = route.query.toString();
        return `/api/v0/messages.json${query ? `?${query}` : ''}`;
      }
      case 'message':
        return `/api/v0/messages/${route.hash}`;
      case 'raw':
        return `/api/v0/storage/raw/${route.hash}`;
    }
  }

  /** True when answered from the node's caches. */
  private async fromCache(route: ApiRoute, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const cache = this.options.cache;
    if (!cache) return false;
    if (route.kind === 'raw') {
      const file = cache.blob(route.hash);
      if (!file) return false;
      let size: number;
      try {
        size = (await stat(file)).size;
      } catch {
        return false; // evicted meanwhile
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size, 'cache-control': 'no-store' });
      if (req.method === 'HEAD') {
        res.end();
        return true;
      }
      const stream = createReadStream(file);
      stream.on('error', () => res.destroy());
      res.on('close', () => stream.destroy());
      stream.pipe(res);
      return true;
    }
    // One message by hash, asked either way.
    let hash: string | undefined;
    if (route.kind === 'message') hash = route.hash;
    else if ([...route.query.keys()].length === 1 && HEX64.test(route.query.get('hashes') ?? '')) hash = route.query.get('hashes')!;
    if (!hash) return false;
    const message = await cache.message(hash).catch(() => undefined);
    if (message === undefined) return false;
    const body = route.kind === 'message'
      ? { status: 'processed', item_hash: hash, message }
      : { messages: [message], pagination_page: 1, pagination_total: 1, pagination_per_page: 20, pagination_item: 'messages' };
    const text = JSON.stringify(body);
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : text);
    return true;
  }
}

export function reply(res: ServerResponse, status: number, message: string, extra: Record<string, string | number> = {}): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = `${message}\n`;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}
