// The Debian 12 instance test image (guest/instance-image, built by
// .ci/setup.d/instances.sh), never built here: a missing one is a clear failure.
// Its sha256 (the STORE's item hash) is kept beside it, computed once.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_VM_CACHE } from '../../src/drivers/image/index.js';
import { REPO_ROOT } from '../drivers/helpers.js';

const run = promisify(execFile);

export interface InstanceImage {
  path: string;
  sha256: string;
  size: number;
}

export async function instanceImage(cacheDir = process.env.ALEPH_EDGE_VM_CACHE || DEFAULT_VM_CACHE): Promise<InstanceImage> {
  let stdout: string;
  try {
    ({ stdout } = await run(path.join(REPO_ROOT, 'guest/instance-image/cached.sh'), ['--check', cacheDir]));
  } catch (error) {
    throw new Error(`${((error as { stderr?: string }).stderr ?? String(error)).trim()}`);
  }
  const image = stdout.trim().split('\n').pop()!;
  const { size } = await stat(image);
  const sidecar = `${image}.sha256`;
  let sha256 = await readFile(sidecar, 'utf8').then((t) => t.trim(), () => '');
  if (!/^[0-9a-f]{64}$/.test(sha256)) {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(image)) hash.update(chunk as Buffer);
    sha256 = hash.digest('hex');
    await writeFile(`${sidecar}.${process.pid}.tmp`, sha256 + '\n');
    await rename(`${sidecar}.${process.pid}.tmp`, sidecar);
  }
  return { path: image, sha256, size };
}
