// Advisory lock files, so two processes sharing one storage folder do not order the
// same certificate twice. A lock is a file created with O_EXCL holding the owner's
// pid, host and a random token. It is stale when its owner process is gone (same
// machine) or when it was not refreshed for staleMs (the holder touches it
// periodically, so only a dead or hung holder lets it age).

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { link, open, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LockOptions {
  /** Give up waiting after this long (default 60 s). */
  timeoutMs?: number;
  /** Poll interval while another process holds the lock (default 100 ms). */
  pollMs?: number;
  /** A lock not refreshed for this long is stale (default 5 min). */
  staleMs?: number;
}

export interface FileLock {
  readonly path: string;
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): Promise<void>;
}

interface LockContent {
  pid: number;
  host: string;
  token: string;
  createdAt: string;
}

export class LockTimeoutError extends Error {
  override readonly name = 'LockTimeoutError';
}

const DEFAULTS = { timeoutMs: 60_000, pollMs: 100, staleMs: 5 * 60_000 };

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parseContent(text: string): LockContent | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockContent>;
    if (typeof value.pid === 'number' && typeof value.host === 'string' && typeof value.token === 'string') {
      return value as LockContent;
    }
  } catch {
    // A holder between create and write, or garbage: judged by age only.
  }
  return undefined;
}

/** One attempt: the lock, or undefined when a live holder has it. */
export async function tryLock(path: string, options: LockOptions = {}): Promise<FileLock | undefined> {
  const staleMs = options.staleMs ?? DEFAULTS.staleMs;
  const content: LockContent = {
    pid: process.pid,
    host: hostname(),
    token: randomBytes(12).toString('hex'),
    createdAt: new Date().toISOString(),
  };
  try {
    const handle = await open(path, 'wx', 0o600);
    try {
      await handle.writeFile(JSON.stringify(content));
    } finally {
      await handle.close();
    }
    return heldLock(path, content.token, staleMs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if (await breakIfStale(path, staleMs)) return tryLock(path, { ...options, staleMs });
  return undefined;
}

/** Waits for the lock, breaking stale ones; throws LockTimeoutError after timeoutMs. */
export async function lock(path: string, options: LockOptions = {}): Promise<FileLock> {
  const timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
  const pollMs = options.pollMs ?? DEFAULTS.pollMs;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const held = await tryLock(path, options);
    if (held) return held;
    if (Date.now() >= deadline) throw new LockTimeoutError(`timed out waiting for lock ${path}`);
    await sleep(pollMs / 2 + Math.random() * pollMs);
  }
}

function heldLock(path: string, token: string, staleMs: number): FileLock {
  // Refresh the mtime so a long-held lock (an ACME order) is not taken for stale.
  const refresh = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => undefined);
  }, Math.max(1000, Math.floor(staleMs / 3)));
  refresh.unref();
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      clearInterval(refresh);
      try {
        const current = parseContent(await readFile(path, 'utf8'));
        if (current?.token === token) await unlink(path);
      } catch {
        // Already gone (broken as stale by someone else): nothing to release.
      }
    },
  };
}

/** Removes the lock at path if it is stale. True when it was removed (or vanished meanwhile). */
async function breakIfStale(path: string, staleMs: number): Promise<boolean> {
  let info;
  let text;
  try {
    info = await stat(path);
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
  const content = parseContent(text);
  const ownerGone = content !== undefined && content.host === hostname() && !processAlive(content.pid);
  const aged = Date.now() - info.mtimeMs > staleMs;
  if (!ownerGone && !aged) return false;
  // Move it aside rather than unlink: if another waiter replaced it meanwhile with a
  // live lock, we notice (different inode) and put that one back.
  const aside = `${path}.${randomBytes(6).toString('hex')}.stale`;
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
  const moved = await stat(aside);
  if (moved.ino !== info.ino) {
    await link(aside, path).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
    return false;
  }
  await unlink(aside).catch(() => undefined);
  return true;
}
