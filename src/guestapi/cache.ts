// The per-program key-value cache (the reference's VmCache), stored in Redis:
//   ae:cache:<program hash>:<key>    the value, expiring after key_ttl
//   ae:cache-index:<program hash>    sorted set of the program's keys, scored by expiry time
// The index makes the per-program key cap and the key listing cost O(keys of this
// program), never a scan of the whole database. Writes of one program are serialized
// in this process (one node serves a program), so the cap holds exactly.
// The program hash comes from the execution the socket belongs to, never from the request.

import type { RedisClient, RedisReply } from './redis.js';

/** Keys as the reference client accepts them (`^\w+$`), ASCII only, bounded. */
const KEY = /^[A-Za-z0-9_]{1,256}$/;
/** Patterns as the reference accepts them: word characters, `?`, `*`, `^`, `-`. */
const PATTERN = /^[A-Za-z0-9_?*^-]{1,256}$/;

export class CacheKeyError extends Error {
  override readonly name = 'CacheKeyError';
}

/** A value above max_value_size, or a new key beyond max_keys. */
export class CacheLimitError extends Error {
  override readonly name = 'CacheLimitError';
  constructor(message: string, readonly kind: 'value_size' | 'keys') {
    super(message);
  }
}

export interface CacheLimits {
  maxValueBytes: number;
  maxKeys: number;
  ttlMs: number;
}

export function checkKey(key: string): string {
  if (!KEY.test(key)) throw new CacheKeyError('Invalid key: use 1-256 letters, digits or underscores');
  return key;
}

export function checkPattern(pattern: string): string {
  if (!PATTERN.test(pattern)) throw new CacheKeyError('Invalid pattern: use letters, digits, underscores, ?, *, ^ and - (at most 256)');
  return pattern;
}

/** Redis glob semantics for the characters a pattern may hold: `*` any run, `?` one, the rest literal. */
export function globMatcher(pattern: string): (key: string) => boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  const regex = new RegExp(`^${source}$`);
  return (key) => regex.test(key);
}

export class ProgramCache {
  /** Per program: the tail of its chain of writes. */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly redis: RedisClient, private readonly limits: CacheLimits) {}

  async get(program: string, key: string): Promise<Buffer | undefined> {
    const value = await this.redis.command(['GET', valueKey(program, checkKey(key))]);
    return Buffer.isBuffer(value) ? value : undefined;
  }

  /** Stores the value; true as the reference answers. */
  set(program: string, key: string, value: Buffer): Promise<boolean> {
    checkKey(key);
    if (value.length > this.limits.maxValueBytes) {
      return Promise.reject(new CacheLimitError(`value of ${value.length} bytes is larger than the ${this.limits.maxValueBytes}-byte limit`, 'value_size'));
    }
    return this.serialized(program, async () => {
      const now = Date.now();
      const index = indexKey(program);
      await this.redis.command(['ZREMRANGEBYSCORE', index, '-inf', now]);
      const known = await this.redis.command(['ZSCORE', index, key]);
      if (known === null) {
        const count = asNumber(await this.redis.command(['ZCARD', index]));
        if (count >= this.limits.maxKeys) {
          throw new CacheLimitError(`cache full: this program has ${count} keys, the maximum; remove some first`, 'keys');
        }
      }
      await this.redis.command(['SET', valueKey(program, key), value, 'PX', this.limits.ttlMs]);
      await this.redis.command(['ZADD', index, now + this.limits.ttlMs, key]);
      // The index lives as long as its newest entry.
      await this.redis.command(['PEXPIRE', index, this.limits.ttlMs]);
      return true;
    });
  }

  /** Removes the key; the number of keys removed (0 or 1), as the reference answers. */
  remove(program: string, key: string): Promise<number> {
    checkKey(key);
    return this.serialized(program, async () => {
      const removed = asNumber(await this.redis.command(['DEL', valueKey(program, key)]));
      await this.redis.command(['ZREM', indexKey(program), key]);
      return removed;
    });
  }

  /** The program's live keys matching the pattern, sorted. */
  async keys(program: string, pattern = '*'): Promise<string[]> {
    const matches = globMatcher(checkPattern(pattern));
    const reply = await this.redis.command(['ZRANGEBYSCORE', indexKey(program), `(${Date.now()}`, '+inf']);
    const names = Array.isArray(reply) ? reply.map((item) => (Buffer.isBuffer(item) ? item.toString('utf8') : String(item))) : [];
    return names.filter(matches).sort();
  }

  private serialized<T>(program: string, task: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(program) ?? Promise.resolve();
    const run = previous.then(task, task);
    const tail = run.catch(() => undefined);
    this.locks.set(program, tail);
    void tail.then(() => {
      if (this.locks.get(program) === tail) this.locks.delete(program);
    });
    return run;
  }
}

function valueKey(program: string, key: string): string {
  return `ae:cache:${program}:${key}`;
}

function indexKey(program: string): string {
  return `ae:cache-index:${program}`;
}

function asNumber(reply: RedisReply): number {
  return typeof reply === 'number' ? reply : Number(reply);
}
