// The runtime builder (`aleph-edge build-runtime --out DIR`): a Debian 12 (bookworm)
// root filesystem with Python and the packages programs on the reference runtime
// expect, as a squashfs a VM mounts as its read-only root (under a tmpfs overlay).
// The work is done by guest/runtime/cached.sh (mmdebstrap from the machine's apt
// sources, mksquashfs with fixed timestamps), cached by package set like the guest
// kernel, so .ci/setup.d/runtime.sh fills the same cache without Node.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { GUEST_DIR } from './guest-init.js';
import { DEFAULT_VM_CACHE } from './kernel.js';

/** As the reference runtime (aleph-vm's Debian runtime): Python with FastAPI, pydantic, aiohttp. */
export const RUNTIME_PACKAGES = ['python3', 'python3-fastapi', 'python3-pydantic', 'python3-aiohttp'] as const;

export interface RuntimeOptions {
  outDir: string;
  cacheDir?: string;
  packages?: readonly string[];
  /** Build output (mmdebstrap, mksquashfs) goes here; default: discarded. */
  onOutput?: (chunk: string) => void;
}

export interface RuntimeImage {
  path: string; // <outDir>/runtime.squashfs
  sha256: string;
  cached: string; // the image in the cache
}

/**
 * The cached image for a package set, building it first when absent (minutes; needs
 * root, mmdebstrap, squashfs-tools); with checkOnly, rejects instead of building.
 */
export function ensureRuntime(cacheDir: string = DEFAULT_VM_CACHE, packages: readonly string[] = RUNTIME_PACKAGES, onOutput?: (chunk: string) => void, checkOnly = false): Promise<string> {
  for (const name of packages) if (!/^[a-z0-9][a-z0-9+.-]+$/.test(name)) throw new Error(`${JSON.stringify(name)} is not a Debian package name`);
  return new Promise((resolve, reject) => {
    const args = [...(checkOnly ? ['--check'] : []), cacheDir, ...packages];
    let errors = '';
    const child = execFile(join(GUEST_DIR, 'runtime', 'cached.sh'), args, { maxBuffer: 64 << 20, timeout: 30 * 60_000 }, (err, stdout) => {
      if (err) return reject(new Error(`runtime ${checkOnly ? 'lookup' : 'build'} failed: ${errors.trim().split('\n').pop() || err.message.split('\n')[0]}`));
      const path = stdout.trim().split('\n').pop() ?? '';
      if (!path.endsWith('/runtime.squashfs')) return reject(new Error(`runtime build printed no image path`));
      resolve(path);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      errors = (errors + chunk.toString()).slice(-4096);
      onOutput?.(chunk.toString());
    });
  });
}

export async function buildRuntime(options: RuntimeOptions): Promise<RuntimeImage> {
  const cached = await ensureRuntime(options.cacheDir ?? DEFAULT_VM_CACHE, options.packages ?? RUNTIME_PACKAGES, options.onOutput);
  await mkdir(options.outDir, { recursive: true });
  const path = join(options.outDir, 'runtime.squashfs');
  const temp = `${path}.${process.pid}.tmp`;
  try {
    await copyFile(cached, temp);
    await rename(temp, path);
  } finally {
    await rm(temp, { force: true });
  }
  return { path, sha256: await sha256File(path), cached };
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}
