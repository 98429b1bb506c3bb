// Downloads from network peers never take the node down (issue 24, item 9): Node's
// bundled fetch (undici 7 in Node 24) throws an uncaught assert(!this.paused) when a
// peer closes the socket while a response body is paused by backpressure
// (nodejs/undici#5360). The node uses the undici it depends on instead.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ArtifactCache, Downloader } from '../../src/programs/aleph/index.js';
import { FetchError } from '../../src/programs/aleph/client.js';
import { ROOT } from '../helpers/paths.js';

const MiB = 1024 * 1024;

/** The cutting storage server in its own process; resolves with its base URL. */
async function cuttingServer(sent: number, declared: number | undefined): Promise<{ base: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'test/fixtures/aleph-api/cutting-storage.mjs')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, SENT: String(sent), DECLARED: declared === undefined ? '' : String(declared) },
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { base: `http://127.0.0.1:${line.toString().trim()}`, child };
}

describe('downloads through the project\'s undici', () => {
  let dir: string;
  const uncaught: Error[] = [];
  const record = (error: Error) => { uncaught.push(error); };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-downloads-'));
    process.on('uncaughtException', record);
  });
  after(async () => {
    process.off('uncaughtException', record);
    await rm(dir, { recursive: true, force: true });
  });

  const cases = [
    { name: 'fewer bytes than Content-Length', sent: 8 * MiB, declared: 16 * MiB, reason: /download interrupted/ },
    { name: 'a close-delimited body (no length) cut short', sent: 8 * MiB, declared: undefined, reason: /does not match its hash/ },
  ];
  for (const [i, c] of cases.entries()) {
    it(`a storage server that closes mid-body under backpressure (${c.name}): a clear error, the process lives`, async () => {
      const { base, child } = await cuttingServer(c.sent, c.declared);
      try {
        const cache = new ArtifactCache(path.join(dir, `cache-${i}`), 256 * MiB);
        await cache.init();
        const downloader = new Downloader({ cache, storageUrl: (h) => `${base}/raw/${h}`, ipfsGateway: base, timeoutMs: 30_000, retries: 0 });
        // The blob the message names: the whole 16 MiB the server never finishes sending.
        const itemHash = createHash('sha256').update(Buffer.alloc(16 * MiB, 7)).digest('hex');
        for (let attempt = 0; attempt < 2; attempt++) {
          const error = await downloader.fetch({ kind: 'code', itemType: 'storage', itemHash, maxBytes: 128 * MiB }).then(
            () => assert.fail('a cut download must not succeed'),
            (e: unknown) => e,
          );
          assert.ok(error instanceof FetchError, `a FetchError, not ${String(error)}`);
          assert.match(error.message, c.reason);
          assert.doesNotMatch(error.message, /at .*\(|assert/i, 'no stack or internal assertion in the reason');
        }
        assert.deepEqual(uncaught.map((e) => e.message), [], 'no uncaught exception');
        // Nothing half-written stays in the cache.
        const left = await readdir(path.join(dir, `cache-${i}`), { recursive: true });
        assert.ok(!left.some((f) => f.endsWith(itemHash)), `no cached blob: ${left.join(', ')}`);
      } finally {
        child.kill();
      }
    });
  }

  it('no code in src/ calls the bundled global fetch', async () => {
    const files = (await readdir(path.join(ROOT, 'src'), { recursive: true })).filter((f) => f.endsWith('.ts'));
    const offenders: string[] = [];
    for (const file of files) {
      // The index page's own script, served to browsers: their fetch, not Node's.
      if (file === path.join('nodeapi', 'page-assets.ts')) continue;
      const text = await readFile(path.join(ROOT, 'src', file), 'utf8');
      // A call, not a method of that name (`async fetch(`, or one opening a line).
      const calls = /(?<![.\w]|async\s+|private\s+|^\s*)fetch\s*\(/m.test(text.replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, ''));
      const imported = /import\s*\{[^}]*\bfetch\b[^}]*\}\s*from\s*'undici'/.test(text);
      if (calls && !imported) offenders.push(file);
      assert.doesNotMatch(text, /globalThis\.fetch/, `${file} uses globalThis.fetch`);
    }
    assert.deepEqual(offenders, [], 'files calling the global fetch');
  });
});
