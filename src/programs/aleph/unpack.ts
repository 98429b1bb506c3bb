// Unpacking a cached blob into a folder next to it (<entry>/<variant>/), once:
//   zip       `unzip` (its listing is checked first: no more than maxBytes unpacked)
//   plain     the blob is one file, named by the program's entrypoint
//   squashfs  `unsquashfs` (the process driver only; VM drivers attach the image itself)
// The folder appears by rename; its size is added to the cache entry.

import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ArtifactCache } from './cache.js';
import { FetchError } from './client.js';
import type { CodeEncoding } from './message.js';

const run = promisify(execFile);
const inflight = new Map<string, Promise<string>>();

export interface UnpackRequest {
  key: string; // the cache entry (item hash)
  encoding: CodeEncoding;
  /** plain: the file name the blob gets inside the folder. */
  fileName?: string;
  /** Largest unpacked size accepted. */
  maxBytes: number;
}

/** The unpacked folder of a cached blob (made on first use). */
export function unpack(cache: ArtifactCache, request: UnpackRequest): Promise<string> {
  const variant = request.encoding === 'plain' ? `plain-${(request.fileName ?? 'code').replace(/[^A-Za-z0-9._-]/g, '_')}` : request.encoding;
  const folder = path.join(cache.folder(request.key), variant);
  const id = `${request.key}/${variant}`;
  let pending = inflight.get(id);
  if (!pending) {
    pending = (async () => {
      if (await exists(folder)) return folder;
      const temp = cache.tempPath(`${request.key}.${variant}`);
      try {
        const bytes = await unpackTo(path.join(cache.folder(request.key), 'blob'), temp, request);
        await rename(temp, folder);
        await cache.grow(request.key, bytes);
        return folder;
      } finally {
        await rm(temp, { recursive: true, force: true });
      }
    })().finally(() => inflight.delete(id));
    inflight.set(id, pending);
  }
  return pending;
}

async function unpackTo(blob: string, dest: string, request: UnpackRequest): Promise<number> {
  switch (request.encoding) {
    case 'plain': {
      await mkdir(dest);
      const file = path.join(dest, path.basename(request.fileName ?? 'code'));
      await copyFile(blob, file);
      await chmod(file, 0o755);
      return (await stat(file)).size;
    }
    case 'zip': {
      const listing = await tool('unzip', ['-Zt', blob], 'the code is not a readable zip archive');
      const match = /(\d+) bytes uncompressed/.exec(listing);
      const total = match ? Number(match[1]) : NaN;
      if (!Number.isFinite(total)) throw new FetchError('the zip archive has no readable listing', false);
      if (total > request.maxBytes) throw new FetchError(`the zip archive unpacks to ${total} bytes, more than ${request.maxBytes}`, false);
      // -n: never overwrite; unzip refuses absolute and ../ member names by itself.
      await tool('unzip', ['-qq', '-n', blob, '-d', dest], 'the zip archive could not be unpacked');
      return total;
    }
    case 'squashfs': {
      await tool('unsquashfs', ['-q', '-n', '-d', dest, blob], 'the squashfs image could not be unpacked');
      const total = await folderSize(dest);
      if (total > request.maxBytes) throw new FetchError(`the squashfs image unpacks to ${total} bytes, more than ${request.maxBytes}`, false);
      return total;
    }
  }
}

async function tool(file: string, args: string[], failure: string): Promise<string> {
  try {
    const { stdout } = await run(file, args, { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new FetchError(`${failure}: ${file} is not installed`, false);
    throw new FetchError(failure, false);
  }
}

async function folderSize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await folderSize(full);
    else if (entry.isFile()) total += (await stat(full)).size;
  }
  return total;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

const imaging = new Map<string, Promise<string>>();

/**
 * A read-only squashfs image of an unpacked folder (a zip or plain code, a data
 * archive) for the VM drivers, which attach images, not folders: built once per
 * cache entry with mksquashfs into tmp/ and renamed to <entry>/<variant>.squashfs,
 * its size added to the entry. Owners are root and times fixed: same folder, same image.
 */
export function squashfsImage(cache: ArtifactCache, key: string, folder: string, what: string): Promise<string> {
  const image = `${folder}.squashfs`;
  let pending = imaging.get(image);
  if (!pending) {
    pending = (async () => {
      if (await exists(image)) return image;
      const temp = cache.tempPath(`${key}.image`);
      try {
        await tool('mksquashfs', [folder, temp, '-noappend', '-quiet', '-no-progress', '-all-root', '-all-time', '0', '-mkfs-time', '0'], `the read-only image of the ${what} could not be made`);
        const bytes = (await stat(temp)).size;
        await rename(temp, image);
        await cache.grow(key, bytes);
        return image;
      } finally {
        await rm(temp, { force: true });
      }
    })().finally(() => imaging.delete(image));
    imaging.set(image, pending);
  }
  return pending;
}

/** True when the file starts with the squashfs magic ("hsqs", little-endian superblock). */
export async function isSquashfsFile(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    return bytesRead === 4 && head.toString('latin1') === 'hsqs';
  } finally {
    await handle.close();
  }
}
