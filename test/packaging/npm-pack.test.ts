// The install path: `npm pack` gives a tarball that installs with npm, puts an
// executable `aleph-edge` on PATH, and carries the units and example config.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../helpers/paths.js';

const run = promisify(execFile);

describe('npm pack + npm install -g of the tarball', () => {
  let dir: string;
  let tarball: string;
  let prefix: string;
  let files: string[];
  let bin: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-pack-'));
    // --ignore-scripts: the suite runs from an already built dist/ (npm test builds first).
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir, ROOT], { cwd: dir });
    const info = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = path.join(dir, info[0]!.filename);
    files = info[0]!.files.map((f) => f.path);
    prefix = path.join(dir, 'prefix');
    await run('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], { cwd: dir, timeout: 120_000 });
    bin = path.join(prefix, 'bin', 'aleph-edge');
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('packs the compiled CLI, units, example config, the guest files and README, not tests or sources', () => {
    for (const expected of ['dist/src/cli.js', 'package.json', 'README.md', 'conf/aleph-edge.toml', 'systemd/aleph-edge.service', 'systemd/aleph-edge.socket', 'systemd/aleph-edge-http.socket', 'systemd/aleph-edge.sysusers.conf', 'systemd/drop-ins/no-socket-activation.conf', 'systemd/drop-ins/vm-driver.conf', 'guest/init/init.sh', 'guest/runtime/build.sh']) {
      assert.ok(files.includes(expected), `${expected} in the tarball`);
    }
    assert.deepEqual(files.filter((f) => f.startsWith('dist/test/') || f.startsWith('src/') || f.startsWith('test/') || f.endsWith('.map')), []);
    // The ASGI server the process driver and the guests run, without its tests or bytecode.
    for (const expected of ['guest/aleph_asgi/__main__.py', 'guest/aleph_asgi/server.py']) assert.ok(files.includes(expected), `${expected} in the tarball`);
    // The default check program (node.check_program), without its unit tests.
    assert.ok(files.includes('examples/diagnostic/main.py'), 'the diagnostic program in the tarball');
    assert.ok(!files.includes('examples/diagnostic/test_main.py'));
    assert.deepEqual(files.filter((f) => f.startsWith('guest/tests/') || f.includes('__pycache__')), []);
  });

  it('installs an executable aleph-edge with a node shebang', async () => {
    assert.ok((await lstat(bin)).isSymbolicLink());
    const mode = (await stat(bin)).mode;
    assert.ok(mode & 0o111, `bin mode ${mode.toString(8)}`);
    assert.match(await readFile(bin, 'utf8'), /^#!\/usr\/bin\/env node\n/);
  });

  it('`aleph-edge version` and `aleph-edge check-config` work from the installed package', async () => {
    const env = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}` };
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal((await run(bin, ['version'], { env })).stdout.trim(), `aleph-edge ${pkg.version}`);
    const installed = path.join(prefix, 'lib/node_modules/aleph-edge');
    const config = path.join(installed, 'conf/aleph-edge.toml');
    assert.match((await run(bin, ['check-config', config], { env })).stdout, /: ok$/m);
    // Its dependencies were installed alongside (no devDependencies).
    const deps = await readdir(path.join(installed, 'node_modules'));
    assert.ok(deps.includes('http-proxy-3') && deps.includes('smol-toml'), deps.join(' '));
    // The installed CLI finds guest/ next to its dist/ (GUEST_DIR), and the server starts from there.
    const guestDir = (await run(process.execPath, ['--input-type=module', '-e', `import { GUEST_DIR } from ${JSON.stringify(path.join(installed, 'dist/src/common/guest.js'))}; console.log(GUEST_DIR);`])).stdout.trim();
    assert.equal(guestDir, path.join(installed, 'guest'));
    const help = await run('/usr/bin/python3', ['-m', 'aleph_asgi', '--help'], { env: { ...env, PYTHONPATH: guestDir } });
    assert.match(help.stdout, /--app-dir/);
    assert.ok(!deps.includes('typescript'));
  });
});
