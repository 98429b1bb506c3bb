// The artifact cache and downloader against a real HTTP server: total-size bound with
// LRU eviction (kept across restarts), single flight, retries on transient errors.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ArtifactCache, Downloader } from '../../src/programs/aleph/index.js';

describe('artifact cache and downloads', () => {
  const blobs = new Map<string, Buffer>();
  const requests = new Map<string, number>();
  /** Answers 503 this many times before serving (per blob). */
  const failFirst = new Map<string, number>();
  let server: http.Server;
  let base: string;
  let dir: string;

  before(async () => {
    server = http.createServer((req, res) => {
      const hash = req.url!.split('/').pop()!;
      requests.set(hash, (requests.get(hash) ?? 0) + 1);
      const failures = failFirst.get(hash) ?? 0;
      if (failures > 0) {
        failFirst.set(hash, failures - 1);
        res.writeHead(503).end();
        return;
      }
      const blob = blobs.get(hash);
      if (!blob) return void res.writeHead(404).end();
      // Slow enough for concurrent fetches to overlap.
      setTimeout(() => res.writeHead(200, { 'content-length': blob.length }).end(blob), 30);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-artifacts-'));
  });
  after(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  function blob(size: number): string {
    const bytes = randomBytes(size);
    const hash = createHash('sha256').update(bytes).digest('hex');
    blobs.set(hash, bytes);
    return hash;
  }

  async function open(maxBytes: number): Promise<{ cache: ArtifactCache; downloader: Downloader }> {
    const cache = new ArtifactCache(dir, maxBytes);
    await cache.init();
    const downloader = new Downloader({ cache, storageUrl: (h) => `${base}/raw/${h}`, ipfsGateway: base, timeoutMs: 5000, retries: 2, retryBaseMs: 20 });
    return { cache, downloader };
  }

  const fetchBlob = (d: Downloader, itemHash: string) => d.fetch({ kind: 'code', itemType: 'storage', itemHash, maxBytes: 1 << 20 });

  it('stays under its total size, evicting the least recently used; the order survives a restart', async () => {
    const { cache, downloader } = await open(1000);
    const [a, b, c, d] = [blob(400), blob(400), blob(400), blob(400)];
    await fetchBlob(downloader, a);
    await new Promise((r) => setTimeout(r, 20));
    await fetchBlob(downloader, b);
    await new Promise((r) => setTimeout(r, 20));
    await fetchBlob(downloader, a); // a is now the most recently used
    assert.equal(requests.get(a), 1, 'served from the cache');
    await new Promise((r) => setTimeout(r, 20));
    await fetchBlob(downloader, c); // evicts b
    assert.deepEqual((await readdir(cache.artifactsDir)).sort(), [a, c].sort());
    assert.ok(cache.totalBytes <= 1000);

    const reopened = await open(1000);
    assert.equal(reopened.cache.totalBytes, 800);
    await fetchBlob(reopened.downloader, d); // a was used before c: a goes
    assert.deepEqual((await readdir(reopened.cache.artifactsDir)).sort(), [c, d].sort());
  });

  it('downloads a blob once for concurrent requests, and retries transient failures', async () => {
    const { downloader } = await open(1 << 20);
    const hash = blob(1000);
    failFirst.set(hash, 1);
    const folders = await Promise.all([fetchBlob(downloader, hash), fetchBlob(downloader, hash), fetchBlob(downloader, hash)]);
    assert.equal(new Set(folders).size, 1);
    assert.equal(requests.get(hash), 2, 'one 503, then one download');

    const missing = 'f'.repeat(64);
    await assert.rejects(fetchBlob(downloader, missing), /storage answered HTTP 404/);
    assert.equal(requests.get(missing), 1, 'a 404 is not retried');
  });
});
