// A small Redis client (RESP2 over one connection), enough for the program cache:
// commands as argument lists, replies in order. Written here rather than adding the
// `redis` package: the cache needs a dozen commands, no pub/sub, no cluster, and
// this keeps the failure behaviour in our hands: while Redis is down every command
// fails at once with RedisUnavailableError (no queue that grows, no request that
// hangs), reconnection is attempted with a doubling backoff, and a command that
// takes longer than the timeout fails and drops the connection (its reply would
// arrive out of order otherwise).

import net from 'node:net';
import { createLogger } from '../common/index.js';

const log = createLogger('guestapi.redis');

export type RedisReply = string | number | Buffer | null | RedisReply[];

/** Redis cannot be reached (down, refused, timed out). */
export class RedisUnavailableError extends Error {
  override readonly name = 'RedisUnavailableError';
}

/** Redis answered with an error reply (-ERR ...). */
export class RedisReplyError extends Error {
  override readonly name = 'RedisReplyError';
}

export interface RedisClientOptions {
  /** 'redis://[:password@]host[:port][/db]' or 'unix:/path'. */
  address: string;
  /** Connecting (and each command) must complete within this. */
  timeoutMs: number;
  /** Reconnection backoff: first delay and cap. Defaults 100 ms and 5 s. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Bulk replies larger than this drop the connection. Default 64 MiB. */
  maxReplyBytes?: number;
}

interface Target {
  connect: net.NetConnectOpts;
  password: string;
  db: number;
  label: string; // for logs: no password
}

export function parseRedisAddress(address: string): Target {
  if (address.startsWith('unix:')) {
    const path = address.slice(5);
    return { connect: { path }, password: '', db: 0, label: `unix:${path}` };
  }
  const url = new URL(address);
  if (url.protocol !== 'redis:') throw new Error(`not a redis:// address: ${address}`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port === '' ? 6379 : Number(url.port);
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  return { connect: { host, port }, password: decodeURIComponent(url.password), db, label: `${host}:${port}` };
}

interface Pending {
  resolve: (reply: RedisReply) => void;
  reject: (error: Error) => void;
}

export class RedisClient {
  private readonly target: Target;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly maxReplyBytes: number;
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private readonly pending: Pending[] = [];
  private buffer: Buffer = Buffer.alloc(0);
  private failures = 0;
  private retryAt = 0;
  private closed = false;
  private wasDown = false;

  constructor(private readonly options: RedisClientOptions) {
    this.target = parseRedisAddress(options.address);
    this.baseMs = options.backoffBaseMs ?? 100;
    this.maxMs = options.backoffMaxMs ?? 5000;
    this.maxReplyBytes = options.maxReplyBytes ?? 64 * 1024 * 1024;
  }

  /** Sends one command; rejects with RedisUnavailableError or RedisReplyError. */
  async command(args: ReadonlyArray<string | Buffer | number>): Promise<RedisReply> {
    const socket = await this.connection();
    return this.send(socket, args);
  }

  /** Closes the connection; later commands fail. */
  close(): void {
    this.closed = true;
    this.drop(new RedisUnavailableError('redis client closed'));
  }

  private async connection(): Promise<net.Socket> {
    if (this.closed) throw new RedisUnavailableError('redis client closed');
    if (this.socket) return this.socket;
    if (this.connecting) return this.connecting;
    if (Date.now() < this.retryAt) throw new RedisUnavailableError(`redis at ${this.target.label} is unreachable`);
    this.connecting = this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async open(): Promise<net.Socket> {
    const socket = net.connect(this.target.connect);
    socket.setNoDelay(true);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new RedisUnavailableError(`redis at ${this.target.label} did not accept a connection within ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
        socket.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.once('error', (error: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          reject(new RedisUnavailableError(`redis at ${this.target.label} is unreachable (${error.code ?? error.message})`));
        });
      });
    } catch (error) {
      socket.destroy();
      this.failed(error as Error);
      throw error;
    }
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.socket === socket) this.drop(new RedisUnavailableError(`connection to redis at ${this.target.label} was lost`));
    });
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    try {
      if (this.target.password) await this.send(socket, ['AUTH', this.target.password]);
      if (this.target.db) await this.send(socket, ['SELECT', this.target.db]);
    } catch (error) {
      this.drop(error as Error);
      this.failed(error as Error);
      throw error instanceof RedisReplyError ? new RedisUnavailableError(`redis at ${this.target.label} refused the session (${error.message})`) : error;
    }
    if (this.wasDown) log.info('redis reachable again', { redis: this.target.label });
    this.failures = 0;
    this.wasDown = false;
    return socket;
  }

  private failed(error: Error): void {
    const delay = Math.min(this.maxMs, this.baseMs * 2 ** this.failures);
    this.failures++;
    this.retryAt = Date.now() + delay;
    if (!this.wasDown) log.warn('redis unreachable; the program cache answers 503 until it is back', { redis: this.target.label, reason: error.message });
    this.wasDown = true;
  }

  private send(socket: net.Socket, args: ReadonlyArray<string | Buffer | number>): Promise<RedisReply> {
    return new Promise<RedisReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        const error = new RedisUnavailableError(`redis at ${this.target.label} did not answer within ${this.options.timeoutMs} ms`);
        // Later replies would be matched to the wrong commands: start over.
        this.drop(error);
        this.failed(error);
      }, this.options.timeoutMs);
      this.pending.push({
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      socket.write(encodeCommand(args));
    });
  }

  private onData(socket: net.Socket, chunk: Buffer): void {
    if (socket !== this.socket) return;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      let parsed: { value: RedisReply | Error; end: number } | undefined;
      try {
        parsed = parseReply(this.buffer, 0, this.maxReplyBytes);
      } catch (error) {
        this.drop(new RedisUnavailableError(`bad reply from redis: ${(error as Error).message}`));
        return;
      }
      if (!parsed) return;
      this.buffer = this.buffer.subarray(parsed.end);
      const waiter = this.pending.shift();
      if (!waiter) {
        this.drop(new RedisUnavailableError('unexpected reply from redis'));
        return;
      }
      if (parsed.value instanceof Error) waiter.reject(parsed.value);
      else waiter.resolve(parsed.value);
    }
  }

  private drop(error: Error): void {
    const socket = this.socket;
    this.socket = undefined;
    this.buffer = Buffer.alloc(0);
    socket?.destroy();
    for (const waiter of this.pending.splice(0)) waiter.reject(error);
  }
}

export function encodeCommand(args: ReadonlyArray<string | Buffer | number>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg));
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Parses one reply at `offset`; undefined when the buffer does not hold all of it yet.
 * Error replies come back as RedisReplyError values (they answer one command).
 */
export function parseReply(buffer: Buffer, offset: number, maxBulk: number): { value: RedisReply | Error; end: number } | undefined {
  const lineEnd = buffer.indexOf('\r\n', offset);
  if (lineEnd === -1) {
    if (buffer.length - offset > 64 * 1024) throw new Error('reply line too long');
    return undefined;
  }
  const type = String.fromCharCode(buffer[offset]!);
  const line = buffer.toString('utf8', offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RedisReplyError(line), end: next };
    case ':':
      return { value: integer(line), end: next };
    case '$': {
      const length = integer(line);
      if (length === -1) return { value: null, end: next };
      if (length < 0 || length > maxBulk) throw new Error(`bulk reply of ${length} bytes`);
      if (buffer.length < next + length + 2) return undefined;
      return { value: Buffer.from(buffer.subarray(next, next + length)), end: next + length + 2 };
    }
    case '*': {
      const count = integer(line);
      if (count === -1) return { value: null, end: next };
      if (count < 0 || count > 1_000_000) throw new Error(`array reply of ${count} items`);
      const items: RedisReply[] = [];
      let end = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buffer, end, maxBulk);
        if (!item) return undefined;
        if (item.value instanceof Error) throw new Error('error inside an array reply');
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`unknown reply type ${JSON.stringify(type)}`);
  }
}

function integer(text: string): number {
  if (!/^-?\d+$/.test(text)) throw new Error(`bad integer ${JSON.stringify(text.slice(0, 20))}`);
  return Number(text);
}
