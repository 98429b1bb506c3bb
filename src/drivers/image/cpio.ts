// A minimal writer for the Linux initramfs format (cpio "newc"). Deterministic:
// fixed mtimes, owners and inode numbers, entries in the order given, so the same
// inputs always give the same bytes. Archives may be concatenated; the kernel
// unpacks each one in turn over the same root.

import { createWriteStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { once } from 'node:events';

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; mode?: number; data: Buffer }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char'; path: string; mode?: number; major: number; minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function pad4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function header(ino: number, mode: number, size: number, nlink: number, name: string, rdev: [number, number] = [0, 0]): Buffer {
  const nameBytes = Buffer.from(`${name}\0`);
  const fields = [
    '070701',
    hex8(ino),
    hex8(mode),
    hex8(0), // uid
    hex8(0), // gid
    hex8(nlink),
    hex8(0), // mtime
    hex8(size),
    hex8(0), hex8(0), hex8(rdev[0]), hex8(rdev[1]), // dev major/minor, rdev major/minor
    hex8(nameBytes.length),
    hex8(0), // check
  ].join('');
  const head = Buffer.concat([Buffer.from(fields, 'ascii'), nameBytes]);
  return Buffer.concat([head, pad4(head.length)]);
}

/** Serialises entries to one newc archive (with its trailer). */
export function encodeCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const entry of entries) {
    const name = entry.path.replace(/^\/+/, '');
    if (name === '') continue;
    if (entry.type === 'dir') {
      parts.push(header(ino++, S_IFDIR | (entry.mode ?? 0o755), 0, 2, name));
    } else if (entry.type === 'file') {
      parts.push(header(ino++, S_IFREG | (entry.mode ?? 0o644), entry.data.length, 1, name), entry.data, pad4(entry.data.length));
    } else if (entry.type === 'char') {
      parts.push(header(ino++, S_IFCHR | (entry.mode ?? 0o600), 0, 1, name, [entry.major, entry.minor]));
    } else {
      const data = Buffer.from(entry.target);
      parts.push(header(ino++, S_IFLNK | 0o777, data.length, 1, name), data, pad4(data.length));
    }
  }
  parts.push(header(0, 0, 0, 1, 'TRAILER!!!'));
  return Buffer.concat(parts);
}

/** Entries for every parent directory of `path` (for archives that add files under new folders). */
export function parentDirs(path: string): CpioEntry[] {
  const parts = path.replace(/^\/+/, '').split('/').slice(0, -1);
  return parts.map((_, i) => ({ type: 'dir', path: parts.slice(0, i + 1).join('/') }));
}

/**
 * Entries for a directory tree copied under `prefix` (sorted, so the order does not
 * depend on the filesystem). Regular files keep their executable bits; everything
 * is owned by root. Special files are skipped.
 */
export async function treeEntries(dir: string, prefix: string): Promise<CpioEntry[]> {
  const out: CpioEntry[] = [...parentDirs(`${prefix}/x`), { type: 'dir', path: prefix }];
  async function walk(abs: string, rel: string): Promise<void> {
    const names = (await readdir(abs)).sort();
    for (const name of names) {
      const from = join(abs, name);
      const to = posix.join(rel, name);
      const stat = await lstat(from);
      if (stat.isDirectory()) {
        out.push({ type: 'dir', path: to, mode: stat.mode & 0o777 });
        await walk(from, to);
      } else if (stat.isFile()) {
        out.push({ type: 'file', path: to, mode: stat.mode & 0o777, data: await readFile(from) });
      } else if (stat.isSymbolicLink()) {
        out.push({ type: 'symlink', path: to, target: await readlink(from) });
      }
    }
  }
  await walk(dir, prefix);
  return dedupeDirs(out);
}

function dedupeDirs(entries: CpioEntry[]): CpioEntry[] {
  const seen = new Set<string>();
  return entries.filter((e) => {
    if (e.type !== 'dir') return true;
    const key = e.path.replace(/^\/+/, '');
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Writes buffers to a file, in order (for concatenating archives). */
export async function writeConcatenated(path: string, parts: Array<Buffer | string>, mode = 0o600): Promise<void> {
  const out = createWriteStream(path, { mode });
  for (const part of parts) {
    const data = typeof part === 'string' ? await readFile(part) : part;
    if (!out.write(data)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}
