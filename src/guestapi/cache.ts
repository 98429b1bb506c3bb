// The per-program key-value cache (the reference's VmCache), stored in Redis:
//   ae:cache:<program hash>:<key>    the value, expiring after key_ttl
//   ae:cache-index:<program hash>    sorted set of the program's keys, scored by expiry time
// The index makes the per-program key cap and the key listing cost O(keys of this
// program), never a scan of the whole database. Each operation is one round trip: a
// command, a MULTI, or a script (set), which Redis runs atomically, so the cap holds
// exactly whoever writes.
// The program hash comes from the execution the socket belongs to, never from the request.

import { RedisReplyError, type RedisClient } from './redis.js';

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

/**
 * One cache.set in one round trip, atomic in Redis: drop expired index entries, refuse
 * a new key beyond the cap, store the value and index it. Returns the key count when
 * full (negative), 1 when stored. KEYS: index, value key. ARGV: now, key, ttl, max, value.
 */
const SET_SCRIPT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  local count = redis.call('ZCARD', KEYS[1])
  if count >= tonumber(ARGV[4]) then return -count end
end
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

export class ProgramCache {
  constructor(private readonly redis: RedisClient, private readonly limits: CacheLimits) {}

  async get(program: string, key: string): Promise<Buffer | undefined> {
    const name = valueKey(program, checkKey(key));
    return (await this.redis.run((r) => r.getBuffer(name))) ?? undefined;
  }

  /** Stores the value; true as the reference answers. */
  async set(program: string, key: string, value: Buffer): Promise<boolean> {
    checkKey(key);
    if (value.length > this.limits.maxValueBytes) {
      throw new CacheLimitError(`value of ${value.length} bytes is larger than the ${this.limits.maxValueBytes}-byte limit`, 'value_size');
    }
    const { ttlMs, maxKeys } = this.limits;
    const result = await this.redis.run((r) => r.eval(SET_SCRIPT, 2, indexKey(program), valueKey(program, key), Date.now(), key, ttlMs, maxKeys, value));
    if (typeof result === 'number' && result <= 0) {
      throw new CacheLimitError(`cache full: this program has ${-result} keys, the maximum; remove some first`, 'keys');
    }
    return true;
  }

  /** Removes the key; the number of keys removed (0 or 1), as the reference answers. */
  async remove(program: string, key: string): Promise<number> {
    checkKey(key);
    const replies = await this.redis.run((r) => r.multi().del(valueKey(program, key)).zrem(indexKey(program), key).exec());
    const [removed] = replies ?? [];
    if (!removed || removed[0]) throw new RedisReplyError(removed?.[0]?.message ?? 'MULTI was aborted');
    return Number(removed[1]);
  }

  /** The program's live keys matching the pattern, sorted. */
  async keys(program: string, pattern = '*'): Promise<string[]> {
    const matches = globMatcher(checkPattern(pattern));
    const index = indexKey(program);
    const names = await this.redis.run((r) => r.zrangebyscore(index, `(${Date.now()}`, '+inf'));
    return names.filter(matches).sort();
  }
}

function valueKey(program: string, key: string): string {
  return `ae:cache:${program}:${key}`;
}

function indexKey(program: string): string {
  return `ae:cache-index:${program}`;
}
