import { Pool } from 'undici';
import type { Endpoint } from '../drivers/index.js';
import { programConnector } from './program-socket.js';

export interface UpstreamPoolOptions {
  /** Idle keep-alive sockets to programs are closed after this; below common server keep-alive (5 s). */
  keepAliveTimeoutMs: number;
  /** A pool unused for this long is closed (its program has likely stopped). */
  unusedPoolMs?: number;
}

/**
 * One undici connection pool per program endpoint. Pools of endpoints that stop
 * being used (executions come and go) are closed by a periodic sweep, so the map
 * does not grow with every boot.
 */
export class UpstreamPools {
  private readonly pools = new Map<string, { pool: Pool; usedAt: number }>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly aborted = new Set<Pool>();
  private retireTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: UpstreamPoolOptions) {
    const unused = options.unusedPoolMs ?? 60_000;
    this.sweeper = setInterval(() => this.sweep(unused), Math.max(1_000, unused / 2));
    this.sweeper.unref();
  }

  for(endpoint: Endpoint): Pool {
    const key = keyOf(endpoint);
    let entry = this.pools.get(key);
    if (!entry) {
      entry = { pool: this.create(endpoint), usedAt: 0 };
      this.pools.set(key, entry);
    }
    entry.usedAt = Date.now();
    return entry.pool;
  }

  /**
   * An in-flight request on this pool was aborted. undici (7.x; kept for 8.x) opens a spare
   * connection for the aborted request and leaves it idle with no keep-alive timer
   * (nodejs/undici#5845); the pool is replaced shortly after, and its graceful close
   * drops that connection once its running requests are done.
   */
  abortedOn(pool: Pool): void {
    this.aborted.add(pool);
    this.retireTimer ??= setTimeout(() => {
      this.retireTimer = undefined;
      for (const [key, entry] of this.pools) {
        if (!this.aborted.has(entry.pool)) continue;
        this.pools.delete(key);
        void entry.pool.close().catch(() => {});
      }
      this.aborted.clear();
    }, 250);
    this.retireTimer.unref();
  }

  /** Shutdown: drops every connection. */
  close(): void {
    clearInterval(this.sweeper);
    clearTimeout(this.retireTimer);
    for (const { pool } of this.pools.values()) void pool.destroy().catch(() => {});
    this.pools.clear();
  }

  private create(endpoint: Endpoint): Pool {
    const host = endpoint.kind === 'tcp' ? (endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host) : 'localhost';
    const origin = `http://${host}${endpoint.kind === 'tcp' ? `:${endpoint.port}` : ''}`;
    return new Pool(origin, {
      // Reads into reused buffers (program-socket.ts).
      connect: programConnector(endpoint.kind === 'unix' ? { path: endpoint.path } : { host: endpoint.host, port: endpoint.port }),
      keepAliveTimeout: this.options.keepAliveTimeoutMs,
      // request_timeout (time to the response head) is enforced by the forwarder;
      // streams may stay quiet for as long as they like.
      headersTimeout: 0,
      bodyTimeout: 0,
      // One request per connection at a time: programs are arbitrary servers.
      pipelining: 1,
    });
  }

  private sweep(unusedMs: number): void {
    const now = Date.now();
    for (const [key, entry] of this.pools) {
      if (now - entry.usedAt < unusedMs) continue;
      this.pools.delete(key);
      // Graceful: a request still running on it finishes first.
      void entry.pool.close().catch(() => {});
    }
  }
}

function keyOf(endpoint: Endpoint): string {
  return endpoint.kind === 'tcp' ? `${endpoint.host}:${endpoint.port}` : `unix:${endpoint.path}`;
}
