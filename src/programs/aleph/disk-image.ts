// What an instance's parent image is, asked of `qemu-img info` (Debian's qemu-utils).
// Only plain disk images are accepted: qcow2 or raw, with no backing file or external
// data file of their own (either would make qemu open a host path the image names),
// and a raw image must carry a partition table (MBR boot signature), so that any
// stored blob is not taken for a disk.

import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export class DiskImageError extends Error {
  override readonly name = 'DiskImageError';
}

export interface DiskImage {
  format: 'qcow2' | 'raw';
  virtualSize: number; // bytes the guest sees
}

/** Inspects a disk image; throws DiskImageError saying why it is not one we boot. */
export async function inspectDiskImage(file: string, qemuImg = 'qemu-img'): Promise<DiskImage> {
  let stdout: string;
  try {
    // -U: read even while a running VM holds the image's lock (a second instance on the same parent).
    ({ stdout } = await run(qemuImg, ['info', '-U', '--output=json', file], { timeout: 30_000, maxBuffer: 1 << 20 }));
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error(`${qemuImg} not found (install qemu-utils)`);
    throw new DiskImageError(`not a disk image (${(e.stderr ?? e.message).trim().split('\n')[0]!.slice(0, 160)})`);
  }
  let info: { format?: unknown; 'virtual-size'?: unknown; 'backing-filename'?: unknown; 'format-specific'?: { data?: { 'data-file'?: unknown } } };
  try {
    info = JSON.parse(stdout) as typeof info;
  } catch {
    throw new DiskImageError('not a disk image (qemu-img could not describe it)');
  }
  const format = info.format;
  if (format !== 'qcow2' && format !== 'raw') throw new DiskImageError(`unsupported disk image format "${String(format)}" (expected qcow2 or raw)`);
  if (info['backing-filename'] !== undefined) throw new DiskImageError('the image names a backing file of its own');
  if (info['format-specific']?.data?.['data-file'] !== undefined) throw new DiskImageError('the image names an external data file');
  const virtualSize = info['virtual-size'];
  if (typeof virtualSize !== 'number' || !Number.isSafeInteger(virtualSize) || virtualSize <= 0) throw new DiskImageError('the image has no size');
  if (format === 'raw' && !(await hasBootSignature(file))) throw new DiskImageError('not a disk image (no partition table)');
  return { format, virtualSize };
}

async function hasBootSignature(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const sector = Buffer.alloc(512);
    const { bytesRead } = await handle.read(sector, 0, 512, 0);
    return bytesRead === 512 && sector[510] === 0x55 && sector[511] === 0xaa;
  } finally {
    await handle.close();
  }
}
