// Crash-safe file writes: a reader sees either the old file or the complete new one.
// The temp file lives in the target's folder (rename is only atomic within one file
// system) and is created with O_EXCL so two writers never share one.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const TEMP_SUFFIX = '.tmp';

/** Temp names start with a dot and end in '.tmp'; nothing reads them as certificates. */
export function isTempName(name: string): boolean {
  return name.startsWith('.') && name.endsWith(TEMP_SUFFIX);
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

/** Writes data to path atomically: temp file (O_EXCL), fsync, chmod, rename, fsync folder. */
export async function atomicWriteFile(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
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

/** Removes temp files older than maxAgeMs left by a crashed writer (younger ones may belong to a live writer). */
export async function removeStaleTemps(dir: string, maxAgeMs: number, now = Date.now()): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!isTempName(name)) continue;
    const path = join(dir, name);
    try {
      const info = await stat(path);
      if (now - info.mtimeMs > maxAgeMs) await unlink(path);
    } catch {
      // Gone already, or not ours to remove: either way not a certificate.
    }
  }
}
