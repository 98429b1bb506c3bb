// `npm install` on a fresh clone must leave package-lock.json unchanged: npm rewrites
// the lock's root entry from package.json (name, version, license, bin, engines,
// dependencies), so any field that drifted (a stale `engines`) shows up as a diff
// in every operator's checkout. Checked against npm itself in a scratch copy.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { ROOT } from '../helpers/paths.js';

const run = promisify(execFile);

describe('package-lock.json', () => {
  let dir: string | undefined;
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('its root entry says what package.json says', async () => {
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
    const lock = JSON.parse(await readFile(path.join(ROOT, 'package-lock.json'), 'utf8'));
    const root = lock.packages[''];
    assert.equal(lock.name, pkg.name);
    assert.equal(lock.version, pkg.version);
    for (const field of ['name', 'version', 'license', 'bin', 'engines', 'dependencies', 'devDependencies']) {
      assert.deepEqual(root[field], pkg[field], `package-lock.json packages[""].${field}`);
    }
  });

  it('npm install --package-lock-only leaves it byte for byte unchanged', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-lock-'));
    for (const file of ['package.json', 'package-lock.json']) await copyFile(path.join(ROOT, file), path.join(dir, file));
    await run('npm', ['install', '--package-lock-only', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, timeout: 120_000 });
    assert.equal(await readFile(path.join(dir, 'package-lock.json'), 'utf8'), await readFile(path.join(ROOT, 'package-lock.json'), 'utf8'));
  });
});
