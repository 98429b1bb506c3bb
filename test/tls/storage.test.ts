import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawn } from 'node:child_process';
import { symlink } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { atomicWriteFile, tempPathFor } from '../../src/tls/atomic.js';
import { normalizeServerName, wildcardFor } from '../../src/tls/hostname.js';
import { InternalCa } from '../../src/tls/internal-ca.js';
import { lock, LockTimeoutError, tryLock } from '../../src/tls/lock.js';
import { PairError } from '../../src/tls/pair.js';
import { CertStorage, InvalidNameError } from '../../src/tls/storage.js';
import { listFiles, tempDir } from './helpers.js';

describe('server names', () => {
  it('normalizes case and one trailing dot, refuses everything that is not a host name', () => {
    assert.equal(normalizeServerName('App.Example.ORG.'), 'app.example.org');
    assert.equal(normalizeServerName('localhost'), 'localhost');
    assert.equal(normalizeServerName('xn--bcher-kva.example'), 'xn--bcher-kva.example');
    for (const bad of ['', '.', 'a..b', '..', '../x', 'a/b', 'a\\b', 'a\0b', '127.0.0.1', '::1', '[::1]', '1.2.3', 'a.123',
      'x'.repeat(64) + '.org', `${'a.'.repeat(127)}ab`, '*.example.org', 'a b.org', '-a.org', 'a-.org', 'a_b.org', 'example.org..']) {
      assert.equal(normalizeServerName(bad), undefined, JSON.stringify(bad));
    }
    assert.equal(normalizeServerName(42), undefined);
  });

  it('finds the one-label wildcard of a host', () => {
    assert.equal(wildcardFor('a.example.org'), '*.example.org');
    assert.equal(wildcardFor('b.a.example.org'), '*.a.example.org');
    assert.equal(wildcardFor('example.org'), undefined);
    assert.equal(wildcardFor('localhost'), undefined);
  });
});

describe('certificate storage', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let ca: InternalCa;
  before(async () => {
    ({ dir, cleanup } = await tempDir());
    ca = await InternalCa.open(path.join(dir, 'ca'));
  });
  after(() => cleanup());

  it('refuses names that are not safe as paths', async () => {
    const storage = await CertStorage.open(path.join(dir, 'names'));
    for (const bad of ['..', '../etc', 'a/b', 'a\0b', 'A.example.org', 'ca.crt', '', '.hidden', '*.*.example.org']) {
      assert.throws(() => storage.hostDir('internal', bad), InvalidNameError, JSON.stringify(bad));
      await assert.rejects(storage.load('internal', bad), InvalidNameError);
    }
    for (const bad of ['..', '', 'a/b', '.x', 'A']) assert.throws(() => storage.hostDir(bad, 'ok.example.org'), InvalidNameError);
    assert.equal(storage.hostDir('internal', '*.example.org'), path.join(dir, 'names', 'internal', '_wildcard.example.org'));
    assert.deepEqual(await listFiles(path.join(dir, 'names')), []);
  });

  it('saves atomically with strict modes, loads lazily, lists from meta.json', async () => {
    const root = path.join(dir, 'save');
    const storage = await CertStorage.open(root);
    assert.equal((await stat(root)).mode & 0o777, 0o700);
    assert.equal(await storage.load('internal', 'none.example.org'), undefined);

    const pair = await ca.issue('s.example.org');
    const saved = await storage.save('internal', 's.example.org', pair);
    const hostDir = path.join(root, 'internal', 's.example.org');
    assert.deepEqual((await readdir(hostDir)).sort(), ['cert.pem', 'key.pem', 'meta.json']);
    assert.equal((await stat(path.join(hostDir, 'key.pem'))).mode & 0o777, 0o600);
    assert.equal((await stat(hostDir)).mode & 0o777, 0o700);
    assert.equal((await stat(path.join(root, 'internal'))).mode & 0o777, 0o700);

    const loaded = await storage.load('internal', 's.example.org');
    assert.equal(loaded?.pair.fingerprint256, saved.pair.fingerprint256);

    // Overwrite: still exactly three files, new content.
    const next = await ca.issue('s.example.org');
    await storage.save('internal', 's.example.org', next);
    assert.deepEqual((await readdir(hostDir)).sort(), ['cert.pem', 'key.pem', 'meta.json']);
    assert.equal(await readFile(path.join(hostDir, 'cert.pem'), 'utf8'), next.certPem);

    await storage.save('acme-test', '*.w.example.org', await ca.issue('*.w.example.org'));
    const listed = await storage.list();
    assert.deepEqual(listed.map((m) => [m.issuer, m.host, m.source]).sort(), [
      ['acme-test', '*.w.example.org', 'acme'],
      ['internal', 's.example.org', 'internal'],
    ]);
  });

  it('refuses to store a pair that does not match or does not name the host', async () => {
    const storage = await CertStorage.open(path.join(dir, 'refuse'));
    const a = await ca.issue('a.example.org');
    const b = await ca.issue('b.example.org');
    await assert.rejects(storage.save('internal', 'a.example.org', { certPem: a.certPem, keyPem: b.keyPem }), PairError);
    await assert.rejects(storage.save('internal', 'b.example.org', a), PairError);
    assert.deepEqual(await listFiles(path.join(dir, 'refuse')), []);
  });

  it('does not serve a stored cert under another host name', async () => {
    const root = path.join(dir, 'swap');
    const storage = await CertStorage.open(root);
    const pair = await ca.issue('real.example.org');
    const fake = path.join(root, 'internal', 'fake.example.org');
    await mkdir(fake, { recursive: true });
    await writeFile(path.join(fake, 'cert.pem'), pair.certPem);
    await writeFile(path.join(fake, 'key.pem'), pair.keyPem);
    assert.equal(await storage.load('internal', 'fake.example.org'), undefined);
  });

  it('atomic writes leave no temp file and remove it on failure', async () => {
    const target = path.join(dir, 'atomic', 'file.txt');
    await mkdir(path.dirname(target), { recursive: true });
    await atomicWriteFile(target, 'one', 0o600);
    await atomicWriteFile(target, 'two', 0o644);
    assert.equal(await readFile(target, 'utf8'), 'two');
    assert.equal((await stat(target)).mode & 0o777, 0o644);
    assert.deepEqual(await readdir(path.dirname(target)), ['file.txt']);
    // Renaming over a folder fails: the temp file must not stay behind.
    await mkdir(path.join(dir, 'atomic', 'folder'));
    await assert.rejects(atomicWriteFile(path.join(dir, 'atomic', 'folder'), 'x', 0o600));
    assert.deepEqual((await readdir(path.dirname(target))).sort(), ['file.txt', 'folder']);
  });

  it('removes at start-up the temp files of writers killed mid-write, and only those', async () => {
    const root = path.join(dir, 'leftovers');
    const targets = [
      path.join(root, 'internal', 'ca.key'),
      path.join(root, 'acme-ca.test', 'app.example.org', 'cert.pem'),
      path.join(root, 'acme-ca.test', '_wildcard.example.org', 'key.pem'),
      path.join(root, 'acme-ca.test', '_accounts', 'ops_at_edge.test-12345678', 'account.key'),
    ];
    for (const target of targets) await mkdir(path.dirname(target), { recursive: true });
    const atomicModule = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../src/tls/atomic.js');
    // A writer process: creates a temp file for each target as atomicWriteFile does, writes
    // half of it, then either is killed there (SIGKILL) or stays alive until told.
    const writer = (paths: string[], die: boolean) => {
      const code = `const { tempPathFor } = await import(${JSON.stringify(atomicModule)});
        const { openSync, writeSync } = await import('node:fs');
        for (const p of ${JSON.stringify(paths)}) writeSync(openSync(tempPathFor(p), 'wx', 0o600), '-----BEGIN PRIVATE');
        ${die ? "process.kill(process.pid, 'SIGKILL');" : "process.stdout.write('ready'); setInterval(() => {}, 1000);"}`;
      return spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    };
    const killed = writer(targets, true);
    const killedSignal = await new Promise((resolve) => killed.once('exit', (_code, signal) => resolve(signal)));
    assert.equal(killedSignal, 'SIGKILL');
    const live = writer([targets[1]!], false);
    await new Promise((resolve) => live.stdout!.once('data', resolve));
    try {
      const hostDir = path.dirname(targets[1]!);
      const ours = tempPathFor(path.join(hostDir, 'meta.json')); // this process: alive, writing
      await writeFile(ours, '{');
      const old = tempPathFor(path.join(hostDir, 'key.pem')); // alive pid but two hours old: a reused pid
      await writeFile(old, 'x');
      await utimes(old, new Date(Date.now() - 2 * 3600_000), new Date(Date.now() - 2 * 3600_000));
      // Not ours by name, or not a file: never touched.
      const foreign = ['notes.tmp', '.cert.pem.tmp', `.cert.pem.${killed.pid}.tmp`, `.cert.pem.${killed.pid}.0123456789ab.tmp.bak`];
      for (const name of foreign) await writeFile(path.join(hostDir, name), 'keep');
      const linkName = path.basename(tempPathFor(path.join(hostDir, 'cert.pem'), killed.pid!));
      await symlink(path.join(hostDir, 'notes.tmp'), path.join(hostDir, linkName));
      await writeFile(targets[1]!, 'the stored certificate');
      const before = await listFiles(root);
      assert.equal(before.filter((f) => f.includes(`.${killed.pid}.`) && /\.[0-9a-f]{12}\.tmp$/.test(f)).length, targets.length + 1, before.join('\n'));

      const storage = await CertStorage.open(root);
      const removedCount = await storage.leftoversRemoved;

      const remaining = await listFiles(root);
      const expected = [
        ...foreign.map((name) => path.relative(root, path.join(hostDir, name))),
        path.relative(root, path.join(hostDir, linkName)),
        path.relative(root, ours),
        path.relative(root, targets[1]!),
        ...before.filter((f) => f.includes(`.${live.pid}.`)),
      ].sort();
      assert.deepEqual(remaining, expected);
      assert.equal(remaining.filter((f) => f.includes(`.${live.pid}.`)).length, 1, 'the live writer keeps its temp file');
      assert.equal(await readFile(targets[1]!, 'utf8'), 'the stored certificate');
      assert.equal(removedCount, targets.length + 1);
    } finally {
      live.kill('SIGKILL');
    }
  });

  it('locks per host: exclusive, released, stale locks of dead processes or old mtimes broken', async () => {
    const storage = await CertStorage.open(path.join(dir, 'locks'));
    const first = await storage.lock('internal', 'l.example.org');
    const lockPath = first.path;
    assert.equal(path.basename(lockPath), '.lock');
    assert.equal(await tryLock(lockPath), undefined);
    await assert.rejects(lock(lockPath, { timeoutMs: 150, pollMs: 20 }), LockTimeoutError);

    // A waiter gets it once released.
    const waiter = lock(lockPath, { timeoutMs: 5000, pollMs: 20 });
    setTimeout(() => void first.release(), 100);
    const second = await waiter;
    await second.release();
    await second.release(); // idempotent
    await assert.rejects(stat(lockPath), { code: 'ENOENT' });

    // Owner process is gone.
    await writeFile(lockPath, JSON.stringify({ pid: 2 ** 30, host: hostname(), token: 'dead', createdAt: new Date().toISOString() }));
    const afterDead = await tryLock(lockPath);
    assert.ok(afterDead);
    // Releasing a lock that someone broke and replaced does not remove theirs.
    await writeFile(lockPath, JSON.stringify({ pid: process.pid, host: hostname(), token: 'someone-else', createdAt: '' }));
    await afterDead.release();
    assert.match(await readFile(lockPath, 'utf8'), /someone-else/);

    // Live owner (us, another token) but not refreshed for longer than staleMs.
    const old = new Date(Date.now() - 60_000);
    await utimes(lockPath, old, old);
    assert.equal(await tryLock(lockPath, { staleMs: 120_000 }), undefined);
    const afterOld = await tryLock(lockPath, { staleMs: 30_000 });
    assert.ok(afterOld);
    await afterOld.release();
    assert.deepEqual(await listFiles(path.join(dir, 'locks')), []);
  });
});
