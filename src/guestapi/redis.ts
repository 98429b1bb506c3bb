// The node's Redis connection, through ioredis (README, Dependencies). Configured to
// fail fast: no offline queue (a command while Redis is down fails at once instead of
// waiting in a queue that grows), a timeout on every command and on connecting, no
// retry of a command, reconnection in the background with a doubling backoff. Every
// error becomes RedisUnavailableError (down, refused, timed out) or RedisReplyError
// (Redis answered with an error), which the guest API answers as 503.

import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import { createLogger } from '../common/index.js';

const log = createLogger('guestapi.redis');

/** Redis cannot be reached (down, refused, timed out). */
export class RedisUnavailableError extends Error {
  override readonly name = 'RedisUnavailableError';
}

/** Redis answered with an error reply (-ERR ...). */
export class RedisReplyError extends Error {
  override readonly name = 'RedisReplyError';
}

export interface RedisClientOptions {
  /** 'redis://[user:password@]host[:port][/db]' or 'unix:/path' (guest_api.redis). */
  address: string;
  /** Connecting and each command must complete within this. */
  timeoutMs: number;
  /** Reconnection backoff: first delay and cap. Defaults 100 ms and 5 s. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/** The address as connection options, and a label for logs (never the password). */
export function parseRedisAddress(address: string): { options: RedisOptions; label: string } {
  if (address.startsWith('unix:')) {
    const path = address.slice(5);
    return { options: { path }, label: `unix:${path}` };
  }
  const url = new URL(address);
  if (url.protocol !== 'redis:') throw new Error(`not a redis:// address: ${address}`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port === '' ? 6379 : Number(url.port);
  const options: RedisOptions = { host, port, db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0 };
  if (url.username) options.username = decodeURIComponent(url.username);
  if (url.password) options.password = decodeURIComponent(url.password);
  return { options, label: `${host}:${port}` };
}

export class RedisClient {
  private readonly redis: Redis;
  private readonly label: string;
  private down = false;
  /** Settles when the first connection attempt ends either way: commands before it wait for it, no longer. */
  private readonly firstAttempt: Promise<unknown>;

  constructor(options: RedisClientOptions) {
    const target = parseRedisAddress(options.address);
    this.label = target.label;
    const base = options.backoffBaseMs ?? 100;
    const max = options.backoffMaxMs ?? 5000;
    this.redis = new Redis({
      ...target.options,
      enableOfflineQueue: false,
      commandTimeout: options.timeoutMs,
      connectTimeout: options.timeoutMs,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (times) => Math.min(max, base * 2 ** Math.min(times - 1, 16)),
    });
    this.redis.on('error', (error: Error) => {
      if (!this.down) log.warn('redis unreachable; the program cache answers 503 until it is back', { redis: this.label, reason: error.message });
      this.down = true;
    });
    this.redis.on('ready', () => {
      if (this.down) log.info('redis reachable again', { redis: this.label });
      this.down = false;
    });
    this.firstAttempt = new Promise<void>((resolve) => {
      this.redis.once('ready', resolve);
      this.redis.once('error', resolve);
      this.redis.once('close', resolve);
    });
  }

  /**
   * Waits until the connection is ready, at most `ms`; never rejects (while Redis is
   * down, commands fail fast and the client keeps reconnecting).
   */
  async connected(ms: number): Promise<boolean> {
    if (this.redis.status === 'ready') return true;
    return new Promise<boolean>((resolve) => {
      const done = (ready: boolean) => {
        clearTimeout(timer);
        this.redis.off('ready', onReady);
        resolve(ready);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      this.redis.once('ready', onReady);
    });
  }

  /** Runs one operation (one round trip: a command, a MULTI or a script), errors as ours. */
  async run<T>(operation: (redis: Redis) => Promise<T>): Promise<T> {
    try {
      await this.firstAttempt;
      return await operation(this.redis);
    } catch (error) {
      if (error instanceof ReplyError) throw new RedisReplyError((error as Error).message);
      throw new RedisUnavailableError(`redis at ${this.label} is unreachable (${(error as Error).message})`);
    }
  }

  /** Closes the connection; later commands fail. */
  close(): void {
    this.redis.disconnect(false);
  }
}
