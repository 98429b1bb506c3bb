// `aleph-edge build-runtime --out DIR` against the runtime cache that
// .ci/setup.d/runtime.sh fills (the same script and key): the image is copied out,
// its sha256 is the last line, and it is the squashfs the VM tests boot.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { ensureRuntime } from '../../src/drivers/image/index.js';
import { REPO_ROOT } from './helpers.js';

const run = promisify(execFile);
const CLI = join(REPO_ROOT, 'dist/src/cli.js');

describe('aleph-edge build-runtime', { timeout: 120_000 }, () => {
  let dir: string;
  let cached: string;

  before(async () => {
    // Never built here (minutes): a missing image fails with what to run.
    cached = await ensureRuntime(undefined, undefined, undefined, true);
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-runtime-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('writes DIR/runtime.squashfs from the cache and prints its sha256 on the last line', async () => {
    const out = join(dir, 'out');
    const { stdout } = await run(process.execPath, [CLI, 'build-runtime', '--out', out], { maxBuffer: 1 << 20 });
    const last = stdout.trim().split('\n').at(-1)!;
    const image = await readFile(join(out, 'runtime.squashfs'));
    assert.equal(last, `sha256 ${createHash('sha256').update(image).digest('hex')}`);
    assert.equal(image.subarray(0, 4).toString('latin1'), 'hsqs');
    assert.ok(image.equals(await readFile(cached)), 'the cached image, byte for byte');
    assert.deepEqual(await readdir(out), ['runtime.squashfs'], 'no temporary file left');
  });

  it('refuses what is not a Debian package name, and a missing --out', async () => {
    await assert.rejects(run(process.execPath, [CLI, 'build-runtime', '--out', join(dir, 'x'), '--package', 'python3;rm']), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /"python3;rm" is not a Debian package name/);
      return true;
    });
    await assert.rejects(run(process.execPath, [CLI, 'build-runtime']), (err: { code: number; stderr: string }) => err.code === 2 && /build-runtime needs --out DIR/.test(err.stderr));
  });

  it('the cache check names what to run when the image is missing', async () => {
    await assert.rejects(ensureRuntime(join(dir, 'empty-cache'), undefined, undefined, true), /no runtime image for \(python3 python3-aiohttp python3-fastapi python3-pydantic \) in .*: run \.ci\/setup\.d\/runtime\.sh or aleph-edge build-runtime/);
  });
});
