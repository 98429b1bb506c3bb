// Content-addressed artifact cache on disk, bounded by total size, LRU-evicted.
//
//   <dir>/artifacts/<item hash>/blob        the downloaded bytes (sha256-checked for storage items)
//   <dir>/artifacts/<item hash>/meta.json   { size, kind } written last: an entry without it is partial
//   <dir>/artifacts/<item hash>/<encoding>/ the blob unpacked (zip, plain, squashfs), made on first use
//   <dir>/tmp/                              downloads in progress (emptied at start)
//
// Entries appear by rename, so a crash leaves either nothing or a whole entry. The
// least recently used time is the entry folder's mtime (touched on use), so the order
// survives restarts. Entries pinned by a resolution in progress are never evicted.

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createLogger } from '../../common/index.js';
import { FetchError } from './client.js';

const log = createLogger('programs.cache');
const KEY = /^[A-Za-z0-9]{32,128}$/;

interface Entry {
  size: number;
  kind: string;
}

export class ArtifactCache {
  readonly artifactsDir: string;
  readonly tmpDir: string;
  /** Map order is the LRU order: first = least recently used. */
  private readonly entries = new Map<string, Entry>();
  private readonly pins = new Map<string, number>();
  private total = 0;

  constructor(readonly dir: string, readonly maxBytes: number) {
    this.artifactsDir = path.join(dir, 'artifacts');
    this.tmpDir = path.join(dir, 'tmp');
  }

  /** Loads the index from disk; partial entries and leftover downloads are removed. */
  async init(): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
    await mkdir(this.artifactsDir, { recursive: true });
    const found: Array<{ key: string; entry: Entry; used: number }> = [];
    for (const key of await readdir(this.artifactsDir)) {
      const folder = path.join(this.artifactsDir, key);
      try {
        const meta = JSON.parse(await readFile(path.join(folder, 'meta.json'), 'utf8')) as Entry;
        if (!KEY.test(key) || typeof meta.size !== 'number') throw new Error('bad entry');
        found.push({ key, entry: { size: meta.size, kind: String(meta.kind) }, used: (await stat(folder)).mtimeMs });
      } catch {
        await rm(folder, { recursive: true, force: true });
      }
    }
    found.sort((a, b) => a.used - b.used);
    for (const { key, entry } of found) {
      this.entries.set(key, entry);
      this.total += entry.size;
    }
    log.debug('artifact cache loaded', { entries: this.entries.size, bytes: this.total });
  }

  static isKey(key: string): boolean {
    return KEY.test(key);
  }

  get totalBytes(): number {
    return this.total;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** The entry folder, marked as just used; undefined when absent. */
  lookup(key: string): string | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    const folder = this.folder(key);
    const now = new Date();
    utimes(folder, now, now).catch(() => {});
    return folder;
  }

  folder(key: string): string {
    return path.join(this.artifactsDir, key);
  }

  /** A fresh path under tmp/ for a download or an unpacking. */
  tempPath(label: string): string {
    return path.join(this.tmpDir, `${label}.${randomBytes(6).toString('hex')}`);
  }

  /** Keeps an entry from eviction until unpin (nestable). */
  pin(key: string): void {
    this.pins.set(key, (this.pins.get(key) ?? 0) + 1);
  }

  unpin(key: string): void {
    const n = (this.pins.get(key) ?? 0) - 1;
    if (n > 0) this.pins.set(key, n);
    else this.pins.delete(key);
  }

  /** Evicts least recently used entries until `bytes` more fit; throws when they cannot. */
  async reserve(bytes: number): Promise<void> {
    if (bytes > this.maxBytes) {
      throw new FetchError(`artifact of ${bytes} bytes is larger than the whole cache (${this.maxBytes} bytes)`, false);
    }
    while (this.total + bytes > this.maxBytes) {
      const victim = [...this.entries.keys()].find((key) => !this.pins.has(key));
      if (victim === undefined) throw new FetchError('artifact cache is full of artifacts in use', true);
      const entry = this.entries.get(victim)!;
      this.entries.delete(victim);
      this.total -= entry.size;
      log.info('evicting artifact', { item: victim.slice(0, 12), bytes: entry.size });
      await rm(this.folder(victim), { recursive: true, force: true });
    }
  }

  /** Moves a complete download into the cache (caller reserved the room). */
  async commit(key: string, blobFile: string, size: number, kind: string): Promise<string> {
    const staging = this.tempPath(`${key}.entry`);
    await mkdir(staging);
    await rename(blobFile, path.join(staging, 'blob'));
    await writeFile(path.join(staging, 'meta.json'), JSON.stringify({ size, kind }));
    const folder = this.folder(key);
    await rm(folder, { recursive: true, force: true });
    await rename(staging, folder);
    const previous = this.entries.get(key);
    if (previous) this.total -= previous.size;
    this.entries.set(key, { size, kind });
    this.total += size;
    return folder;
  }

  /** Accounts bytes added to an entry (an unpacked tree); evicts others to make room. */
  async grow(key: string, bytes: number): Promise<void> {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.pin(key);
    try {
      entry.size += bytes;
      this.total += bytes;
      await writeFile(path.join(this.folder(key), 'meta.json'), JSON.stringify(entry));
      await this.reserve(0);
    } finally {
      this.unpin(key);
    }
  }
}
