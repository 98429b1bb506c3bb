// The snapshot cache: a VM's saved state per program version, keyed by everything the
// state was made from (see snapshotKey). Entries are written under a temporary name
// and renamed into place whole, checked (size and sha256) before each use, and
// evicted least recently used first when the cache passes its bound. A bad entry is
// removed and reported as absent: the caller boots instead.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/index.js';

export interface SnapshotEntry {
  key: string;
  /** The saved VM state (for qemu: its migration stream). */
  state: string;
  size: number;
  sha256: string;
}

interface Meta {
  key: string;
  size: number;
  sha256: string;
  created_at: string;
  /** What the entry is of (program hash, driver), for operators listing the cache. */
  label: string;
}

const KEY = /^[0-9a-f]{64}$/;

/** A cache key: the sha256 of every input, as canonical JSON (key order as given). */
export function snapshotKey(inputs: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex');
}

export class SnapshotStore {
  private readonly saving = new Map<string, Promise<SnapshotEntry | undefined>>();

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  /** The entry for `key` when it exists and is intact; a damaged one is removed (with a warning). */
  async find(key: string): Promise<SnapshotEntry | undefined> {
    if (!KEY.test(key)) return undefined;
    const entryDir = join(this.dir, key);
    let meta: Meta;
    try {
      meta = JSON.parse(await readFile(join(entryDir, 'meta.json'), 'utf8')) as Meta;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') await this.discard(key, `unreadable metadata (${(err as Error).message})`);
      return undefined;
    }
    const state = join(entryDir, 'state');
    const size = await stat(state).then((s) => s.size, () => -1);
    if (size !== meta.size) return void (await this.discard(key, `state is ${size < 0 ? 'missing' : `${size} bytes, expected ${meta.size}`}`));
    const sha256 = await sha256File(state);
    if (sha256 !== meta.sha256) return void (await this.discard(key, 'state does not match its sha256'));
    // Used now: the least recently used entries go first when the cache is full.
    const now = new Date();
    await utimes(entryDir, now, now).catch(() => {});
    return { key, state, size, sha256 };
  }

  /**
   * Makes the entry for `key`: `produce` writes the state to the path it is given; the
   * entry appears whole or not at all. One save per key at a time; a failed save
   * leaves nothing behind and resolves undefined.
   */
  save(key: string, label: string, produce: (statePath: string) => Promise<void>): Promise<SnapshotEntry | undefined> {
    const running = this.saving.get(key);
    if (running) return running;
    const done = this.write(key, label, produce).finally(() => this.saving.delete(key));
    this.saving.set(key, done);
    return done;
  }

  /** Removes an entry (a version that will never be asked for again, or a damaged one). */
  async remove(key: string): Promise<void> {
    if (KEY.test(key)) await rm(join(this.dir, key), { recursive: true, force: true });
  }

  /** Whether some entry was saved under this label (any version of a program: a cold start may restore). */
  async hasLabel(label: string): Promise<boolean> {
    for (const { key } of await this.list()) {
      try {
        if ((JSON.parse(await readFile(join(this.dir, key, 'meta.json'), 'utf8')) as Meta).label === label) return true;
      } catch {
        // being written or removed
      }
    }
    return false;
  }

  /** Entries with their size and last use, most recently used first. */
  async list(): Promise<Array<{ key: string; bytes: number; usedAt: number }>> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const entries = await Promise.all(
      names.filter((n) => KEY.test(n)).map(async (key) => {
        const dir = join(this.dir, key);
        const [dirStat, stateStat] = await Promise.all([stat(dir).catch(() => undefined), stat(join(dir, 'state')).catch(() => undefined)]);
        return dirStat ? { key, bytes: stateStat?.size ?? 0, usedAt: dirStat.mtimeMs } : undefined;
      }),
    );
    return entries.filter((e) => e !== undefined).sort((a, b) => b.usedAt - a.usedAt);
  }

  private async write(key: string, label: string, produce: (statePath: string) => Promise<void>): Promise<SnapshotEntry | undefined> {
    if (!KEY.test(key)) throw new Error(`snapshot key ${key} is not a sha256`);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `.tmp-${key.slice(0, 12)}-${randomBytes(4).toString('hex')}`);
    await mkdir(tmp, { mode: 0o700 });
    try {
      const state = join(tmp, 'state');
      await produce(state);
      const { size } = await stat(state);
      if (size > this.maxBytes) {
        this.log.warn('snapshot larger than the whole cache, not kept', { key: key.slice(0, 12), bytes: size, max_bytes: this.maxBytes });
        return undefined;
      }
      const sha256 = await sha256File(state);
      const meta: Meta = { key, size, sha256, created_at: new Date().toISOString(), label };
      await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n', { mode: 0o600 });
      await rm(join(this.dir, key), { recursive: true, force: true });
      await rename(tmp, join(this.dir, key));
      await this.evict(key);
      return { key, state: join(this.dir, key, 'state'), size, sha256 };
    } catch (err) {
      this.log.warn('snapshot not saved', { key: key.slice(0, 12), error: (err as Error).message });
      return undefined;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Least recently used entries go until the cache fits its bound; `keep` (just saved) stays. */
  private async evict(keep: string): Promise<void> {
    const entries = await this.list();
    let total = entries.reduce((sum, e) => sum + e.bytes, 0);
    for (const entry of entries.reverse()) {
      if (total <= this.maxBytes) break;
      if (entry.key === keep) continue;
      await this.remove(entry.key);
      total -= entry.bytes;
      this.log.info('snapshot evicted', { key: entry.key.slice(0, 12), bytes: entry.bytes });
    }
  }

  private async discard(key: string, why: string): Promise<void> {
    this.log.warn('snapshot unusable, removed; the program boots instead', { key: key.slice(0, 12), reason: why });
    await this.remove(key);
  }
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}
