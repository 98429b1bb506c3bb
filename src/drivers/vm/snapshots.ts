// The snapshot cache: a VM's saved state per program version, keyed by everything the
// state was made from (see snapshotKey). An entry is the `state` file and whatever
// other files the VMM wrote beside it (Firecracker: its guest memory), each checked.
// Entries are written under a temporary name
// and renamed into place whole, checked (size and sha256) before each use, and
// evicted least recently used first when the cache passes its bound. A bad entry is
// removed and reported as absent: the caller boots instead.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/index.js';

export interface SnapshotEntry {
  key: string;
  /** The saved VM state (for qemu: its migration stream; Firecracker: its state file). */
  state: string;
  /** Every file of the entry by name, `state` included (Firecracker: `memory` too). */
  files: Record<string, string>;
  /** Bytes of all its files. */
  size: number;
  sha256: string;
}

interface FileMeta {
  size: number;
  sha256: string;
}

interface Meta {
  key: string;
  size: number;
  sha256: string;
  /** The files besides `state` (absent in entries that have none). */
  others?: Record<string, FileMeta>;
  created_at: string;
  /** What the entry is of (program hash, driver), for operators listing the cache. */
  label: string;
}

const KEY = /^[0-9a-f]{64}$/;

/** The node's version: a saved state is never restored by another one. */
export const NODE_VERSION = (JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** What stands for a file in a key: a replaced or rebuilt file is another identity. */
export async function fileIdentity(path: string): Promise<{ path: string; size: number; mtime: number; ino: number }> {
  const s = await stat(path);
  return { path, size: s.size, mtime: s.mtimeMs, ino: s.ino };
}

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
    const files: Record<string, string> = {};
    let total = 0;
    for (const [name, expected] of Object.entries({ state: { size: meta.size, sha256: meta.sha256 }, ...meta.others })) {
      const path = join(entryDir, name);
      const size = await stat(path).then((s) => s.size, () => -1);
      if (size !== expected.size) return void (await this.discard(key, `${name} is ${size < 0 ? 'missing' : `${size} bytes, expected ${expected.size}`}`));
      if ((await sha256File(path)) !== expected.sha256) return void (await this.discard(key, `${name} does not match its sha256`));
      files[name] = path;
      total += size;
    }
    // Used now: the least recently used entries go first when the cache is full.
    const now = new Date();
    await utimes(entryDir, now, now).catch(() => {});
    return { key, state: files.state!, files, size: total, sha256: meta.sha256 };
  }

  /**
   * Makes the entry for `key`: `produce` writes the state to the path it is given (and
   * may write other files beside it); the entry appears whole or not at all. One save per key at a time; a failed save
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
        const dirStat = await stat(dir).catch(() => undefined);
        if (!dirStat) return undefined;
        const names = await readdir(dir).catch(() => [] as string[]);
        const sizes = await Promise.all(names.filter((n) => n !== 'meta.json').map((n) => stat(join(dir, n)).then((s) => s.size, () => 0)));
        return { key, bytes: sizes.reduce((a, b) => a + b, 0), usedAt: dirStat.mtimeMs };
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
      const files: Record<string, FileMeta> = {};
      let size = 0;
      for (const name of (await readdir(tmp)).sort()) {
        const bytes = (await stat(join(tmp, name))).size;
        files[name] = { size: bytes, sha256: '' };
        size += bytes;
      }
      if (!files.state) throw new Error('the VMM wrote no state');
      if (size > this.maxBytes) {
        this.log.warn('snapshot larger than the whole cache, not kept', { key: key.slice(0, 12), bytes: size, max_bytes: this.maxBytes });
        return undefined;
      }
      for (const [name, file] of Object.entries(files)) file.sha256 = await sha256File(join(tmp, name));
      const { state: main, ...others } = files;
      const meta: Meta = { key, size: main!.size, sha256: main!.sha256, ...(Object.keys(others).length > 0 ? { others } : {}), created_at: new Date().toISOString(), label };
      await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n', { mode: 0o600 });
      await rm(join(this.dir, key), { recursive: true, force: true });
      await rename(tmp, join(this.dir, key));
      await this.evict(key);
      const entryDir = join(this.dir, key);
      return { key, state: join(entryDir, 'state'), files: Object.fromEntries(Object.keys(files).map((n) => [n, join(entryDir, n)])), size, sha256: main!.sha256 };
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
