// The guest API: what a running program may call on the host (docs/guest-api.md).
// One HTTP server per execution on its own unix socket under guest_api.socket_dir;
// the orchestrator opens it before the driver starts the program (GuestServices)
// and closes it when the execution ends. Drivers make the socket reachable from the
// program (src/drivers/guest-link.ts).

import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { GuestApiSettings } from '../config/index.js';
import { createLogger, shortHash } from '../common/index.js';
import type { Counter, MetricsRegistry } from '../metrics/index.js';
import type { Program } from '../programs/index.js';
import { ProgramCache } from './cache.js';
import { AlephPassthrough, type AlephReadCache } from './passthrough.js';
import { RedisClient } from './redis.js';
import { GuestSessionServer } from './server.js';

export { ProgramCache, CacheKeyError, CacheLimitError, checkKey, checkPattern, globMatcher } from './cache.js';
export { RedisClient, RedisReplyError, RedisUnavailableError, parseRedisAddress } from './redis.js';
export type { AlephReadCache } from './passthrough.js';

const log = createLogger('guestapi');
const EXECUTION_ID = /^[A-Za-z0-9._-]{1,64}$/;

export interface GuestApiDeps {
  /** programs.aleph_api: where read-only API calls go. */
  alephApi: string;
  /** The node's message and artifact caches (programs.source = "aleph"). */
  cache?: AlephReadCache;
  metrics?: MetricsRegistry;
}

export interface GuestApiSession {
  socket: string;
  close(): Promise<void>;
}

/** Implements the orchestrator's GuestServices. */
export class GuestApi {
  private readonly redis: RedisClient;
  private readonly cache: ProgramCache;
  private readonly api: AlephPassthrough;
  private readonly sessions = new Set<GuestSessionServer>();
  private readonly requests: Counter | undefined;

  private constructor(private readonly settings: GuestApiSettings, deps: GuestApiDeps) {
    this.redis = new RedisClient({ address: settings.redis, timeoutMs: settings.redisTimeoutMs });
    this.cache = new ProgramCache(this.redis, { maxValueBytes: settings.maxValueBytes, maxKeys: settings.maxKeys, ttlMs: settings.keyTtlMs });
    this.api = new AlephPassthrough({ api: deps.alephApi, timeoutMs: settings.apiTimeoutMs, maxBytes: settings.maxResponseBytes, cache: deps.cache });
    this.requests = deps.metrics?.counter('aleph_edge_guest_api_requests_total', 'Requests programs made to the guest API, by route and status');
    deps.metrics?.gauge('aleph_edge_guest_api_sessions', 'Guest API sockets open (one per running execution)').collect(() => [[{}, this.sessions.size]]);
  }

  /** Makes the socket folder (private to the node) and removes sockets a previous node left. */
  static async create(settings: GuestApiSettings, deps: GuestApiDeps): Promise<GuestApi> {
    await mkdir(settings.socketDir, { recursive: true, mode: 0o700 });
    // Only the node connects to these sockets (through its guest-links).
    await chmod(settings.socketDir, 0o700);
    for (const name of await readdir(settings.socketDir)) {
      if (name.endsWith('.sock')) await rm(path.join(settings.socketDir, name), { force: true });
    }
    return new GuestApi(settings, deps);
  }

  /** The socket path an execution gets. */
  socketPath(executionId: string): string {
    return path.join(this.settings.socketDir, `${executionId}.sock`);
  }

  async open(program: Program, executionId: string): Promise<GuestApiSession> {
    if (!EXECUTION_ID.test(executionId)) throw new Error(`bad execution id ${JSON.stringify(executionId)}`);
    const server = new GuestSessionServer(this.socketPath(executionId), program.hash, this.cache, this.api, {
      maxValueBytes: this.settings.maxValueBytes,
      maxConnections: this.settings.maxConnections,
      idleTimeoutMs: this.settings.idleTimeoutMs,
    }, this.requests);
    await server.listen();
    this.sessions.add(server);
    log.debug('guest API open', { hash: shortHash(program.hash), id: executionId });
    return {
      socket: server.socket,
      close: async () => {
        await server.close();
        this.sessions.delete(server);
      },
    };
  }

  /** Sessions open right now. */
  get openSessions(): number {
    return this.sessions.size;
  }

  /** Closes every session and the Redis connection. */
  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.close()));
    this.sessions.clear();
    this.redis.close();
  }
}
