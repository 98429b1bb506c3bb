// Crash-safe file writes: a reader sees either the old file or the complete new one.
// The temp file lives in the target's folder (rename is only atomic within one file
// system) and is created with O_EXCL so two writers never share one.

import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const TEMP_SUFFIX = '.tmp';
// '.<target>.<writer pid>.<12 hex>.tmp', exactly as atomicWriteFile names them: an
// operator's own 'notes.tmp' or another program's temp file never matches.
const TEMP_NAME = /^\.(.+)\.([1-9]\d{0,9})\.[0-9a-f]{12}\.tmp$/;

/** The temp file's target name and writer pid when it is one of ours, else undefined. */
export function parseTempName(name: string): { target: string; pid: number } | undefined {
  const match = TEMP_NAME.exec(name);
  return match ? { target: match[1]!, pid: Number(match[2]) } : undefined;
}

/** True for a temp file atomicWriteFile made; nothing reads them as certificates. */
export function isTempName(name: string): boolean {
  return parseTempName(name) !== undefined;
}

/** True while a process with that pid exists (EPERM: it exists, under another user). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates a folder (and parents) with the given mode when missing; existing folders are left as they are. */
export async function ensureDir(path: string, mode = 0o700): Promise<void> {
  await mkdir(path, { recursive: true, mode });
}

/** fsync a folder so a rename inside it survives a power loss. */
export async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A fresh temp path next to path, named for this process (see TEMP_NAME). */
export function tempPathFor(path: string, pid = process.pid): string {
  return join(dirname(path), `.${basename(path)}.${pid}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
}

/** Writes data to path atomically: temp file (O_EXCL), fsync, chmod, rename, fsync folder. */
export async function atomicWriteFile(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const dir = dirname(path);
  const temp = tempPathFor(path);
  const handle = await open(temp, 'wx', mode);
  try {
    try {
      await handle.writeFile(data);
      // open()'s mode is filtered by the umask; set it exactly.
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

/**
 * Removes the temp files a writer left when it died mid-write: ours by name, and
 * either their writer is gone or they are older than maxAgeMs (a reused pid, or a
 * writer on another host sharing the folder). A live writer's young temp file is
 * kept. Returns how many were removed.
 */
export async function removeStaleTemps(dir: string, maxAgeMs: number, options: { now?: number; alive?: (pid: number) => boolean; names?: string[] } = {}): Promise<number> {
  const now = options.now ?? Date.now();
  const alive = options.alive ?? processAlive;
  let names: string[];
  try {
    names = options.names ?? await readdir(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const temp = parseTempName(name);
    if (!temp) continue;
    const path = join(dir, name);
    try {
      const info = await lstat(path);
      if (!info.isFile()) continue;
      if (alive(temp.pid) && now - info.mtimeMs <= maxAgeMs) continue;
      await unlink(path);
      removed++;
    } catch {
      // Gone already, or not ours to remove: either way not a certificate.
    }
  }
  return removed;
}
