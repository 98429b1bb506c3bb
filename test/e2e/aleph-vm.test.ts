// A real Aleph program in a real VM: a PROGRAM message on the stand-in Aleph API names
// a zip of a FastAPI app (test/fixtures/asgi-app), the built Debian runtime
// (.ci/setup.d/runtime.sh), a persistent volume at /var/lib/example, an ephemeral
// volume, an immutable volume and zipped data. The whole node (TLS, routing,
// orchestrator, programs.source = "aleph", the qemu driver under TCG) boots it and
// the test checks what the program sees, through HTTPS, across `aleph-edge stop`
// and a node restart. The guest API (a real redis-server of the test's own, reached
// from the VM through qemu's guestfwd): /cache/set survives a reboot and a node
// restart, another program's keys are not visible. Bad messages are refused before
// anything boots.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { AlephEdgeNode } from '../../src/app/index.js';
import { base32Encode, setLogLevel } from '../../src/common/index.js';
import { loadConfig } from '../../src/config/index.js';
import { buildBaseInitramfs, ensureKernel, ensureRuntime } from '../../src/drivers/image/index.js';
import { FakeAlephApi, SENDER, zip } from '../fixtures/aleph-api/server.js';
import { removeRedis, startRedis, type RedisServer } from '../guestapi/redis-harness.js';
import { REPO_ROOT } from '../drivers/helpers.js';
import { processesWith, qemuSkipReason } from '../drivers/qemu-guest.js';
import { request, until, type TestNode } from '../helpers/node.js';
import { qemuAlephConfig } from '../helpers/qemu-aleph-config.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');
const run = promisify(execFile);
const skip = qemuSkipReason();
const MIB = 1024 * 1024;

interface Setup {
  dir: string;
  kernel: string;
  initramfs: string;
  runtime: Buffer;
}

async function setup(): Promise<Setup> {
  // Built by .ci/setup.d/runtime.sh (minutes): never here, so a missing one is a clear failure.
  const runtimePath = await ensureRuntime(undefined, undefined, undefined, true);
  const kernel = await ensureKernel();
  const dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-alephvm-'));
  const initramfs = join(dir, 'initramfs.cpio');
  await writeFile(initramfs, await buildBaseInitramfs({ modulesDir: kernel.modulesDir }));
  return { dir, kernel: kernel.vmlinuz, initramfs, runtime: await readFile(runtimePath) };
}

async function squashfsOf(dir: string, files: Record<string, string>): Promise<Buffer> {
  const src = await mkdtemp(join(dir, 'src-'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(src, name), text);
  const image = `${src}.squashfs`;
  execFileSync('mksquashfs', [src, image, '-noappend', '-quiet', '-all-root']);
  const bytes = await readFile(image);
  await rm(src, { recursive: true, force: true });
  await rm(image, { force: true });
  return bytes;
}

/** A node with programs from the stand-in API on the qemu driver (TCG); cache and volumes survive restarts. */
async function startNode(s: Setup, api: FakeAlephApi, redis: RedisServer, name: string): Promise<TestNode> {
  const dir = join(s.dir, name);
  await mkdir(dir, { recursive: true });
  const config = join(dir, 'aleph-edge.toml');
  await writeFile(config, qemuAlephConfig({ nodeDir: dir, shared: s.dir, kernel: s.kernel, initramfs: s.initramfs, apiUrl: api.url, redis: redis.address }));
  const settings = await loadConfig(config);
  settings.server.httpsListen = [{ host: '127.0.0.1', port: 0 }];
  const node = await AlephEdgeNode.start(settings, { version: 'test', inherited: [] });
  return {
    node, settings, dir, configFile: config, domain: 'edge.test', httpsPort: node.port('https')!, httpPort: 0,
    socket: settings.server.statusSocket, ca: await readFile(join(dir, 'certs/internal/ca.crt'), 'utf8'), close: () => node.drain(),
  };
}

function get(node: TestNode, hash: string, rest: string) {
  return request(node, { host: node.domain, path: `/vm/${hash}/${rest}` });
}

async function json<T>(node: TestNode, hash: string, rest: string): Promise<T> {
  const reply = await get(node, hash, rest);
  assert.equal(reply.status, 200, `${rest}: ${reply.body}`);
  return JSON.parse(reply.body) as T;
}

/** The body's data events with their arrival times. */
function streamed(node: TestNode, path: string): Promise<Array<{ at: number; text: string }>> {
  return new Promise((resolve, reject) => {
    const chunks: Array<{ at: number; text: string }> = [];
    https.get({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, path, headers: { host: node.domain }, agent: false }, (res) => {
      res.on('data', (c: Buffer) => chunks.push({ at: performance.now(), text: c.toString() }));
      res.on('end', () => resolve(chunks));
      res.on('error', reject);
    }).on('error', reject);
  });
}

type Volumes = { scratch_before: string[]; immutable: string; immutable_write: string; code_write: string; data: string; hostname: string; custom: string };

describe('an Aleph ASGI program with volumes in a qemu VM (TCG)', { skip: skip || false, timeout: 600_000 }, () => {
  let s: Setup;
  let api: FakeAlephApi;
  let redis: RedisServer;
  let hash: string;
  let runtimeRef: string;

  before(async () => {
    s = await setup();
    api = new FakeAlephApi();
    await api.start();
    redis = await startRedis();
    runtimeRef = api.addStore(s.runtime);
    const code = api.addStore(zip({ 'main.py': { text: await readFile(join(REPO_ROOT, 'test/fixtures/asgi-app/main.py'), 'utf8') } }));
    const venv = api.addStore(await squashfsOf(s.dir, { hello: 'from the immutable volume' }));
    const data = api.addStore(zip({ 'data.txt': { text: 'some data' } }));
    hash = api.addProgram({
      code, runtime: runtimeRef, encoding: 'zip', entrypoint: 'main:app', memory: 256,
      data: { ref: data, encoding: 'zip', mount: '/data' },
      volumes: [
        { mount: '/opt/venv', ref: venv, use_latest: false },
        { mount: '/var/lib/example', name: 'data', persistence: 'host', size_mib: 4 },
        { mount: '/scratch', ephemeral: true, size_mib: 2 },
      ],
    });
  });
  after(async () => {
    await api?.close();
    if (redis) await removeRedis(redis);
    if (!s) return;
    for (const pid of processesWith(s.dir)) process.kill(pid, 'SIGKILL');
    await rm(s.dir, { recursive: true, force: true });
  });

  it('serves state, volumes, the guest API cache, streaming and WebSocket; volume and cache survive stop and node restart', async (t) => {
    // Another program's entry, as the guest API stores it: the VM's program must not see it.
    const other = 'f'.repeat(64);
    await redis.cli('SET', `ae:cache:${other}:secret`, 'not yours');
    await redis.cli('ZADD', `ae:cache-index:${other}`, String(Date.now() + 3_600_000), 'secret');
    let node = await startNode(s, api, redis, 'node1');
    try {
      const t0 = performance.now();
      const lifespan = await json<{ events: string[] }>(node, hash, 'lifespan');
      t.diagnostic(`first request (download, images, boot, lifespan) ${Math.round(performance.now() - t0)} ms`);
      assert.deepEqual(lifespan.events, ['startup'], 'lifespan startup ran before the first request');

      assert.deepEqual(await json(node, hash, 'state/increment'), { counter: 1 });
      assert.deepEqual(await json(node, hash, 'state/increment'), { counter: 2 });

      const first = await json<Volumes>(node, hash, 'volumes');
      assert.deepEqual(first.scratch_before, ['lost+found'], 'the ephemeral volume starts empty (ext4 has its lost+found)');
      assert.equal(first.immutable, 'from the immutable volume');
      assert.equal(first.immutable_write, 'EROFS');
      assert.equal(first.code_write, 'EROFS');
      assert.equal(first.data, 'some data');
      assert.equal(first.custom, '32');
      assert.equal(first.hostname, base32Encode(Buffer.from(hash, 'hex')), 'the hostname is the base32 label of the hash');

      // The guest API from inside the VM (user-mode networking: 10.0.2.100 is qemu's guestfwd).
      assert.deepEqual(await json(node, hash, 'api-env'), { ALEPH_API_HOST: 'http://10.0.2.100', ALEPH_API_UNIX_SOCKET: '', ALEPH_ADDRESS_TO_USE: SENDER });
      assert.deepEqual(await json(node, hash, 'cache/set/greeting?value=hello%20cache'), { status: 200, body: 'true' });
      assert.deepEqual(await json(node, hash, 'cache/get/greeting'), { status: 200, value: 'hello cache' });
      assert.deepEqual(await json(node, hash, 'cache/get/secret'), { status: 404, value: null }, 'another program\'s key is not visible');
      assert.deepEqual(await json(node, hash, 'cache/keys'), { status: 200, keys: ['greeting'] });
      assert.equal(await redis.cli('GET', `ae:cache:${hash}:greeting`), 'hello cache\n', 'stored under the program\'s own namespace');

      // The persistent volume's size is its image's: writing past it fails inside; the host file stays 4 MiB.
      const image = join(s.dir, 'volumes', hash, 'data.img');
      const fill = await json<{ written: number; error: string }>(node, hash, 'fill');
      assert.equal(fill.error, 'ENOSPC');
      assert.ok(fill.written > 0 && fill.written < 4 * MIB, `${fill.written} bytes written`);
      const info = await stat(image);
      assert.equal(info.size, 4 * MIB);
      assert.ok(info.blocks * 512 <= 4 * MIB, 'no more host disk than the image size');

      // A streamed response arrives chunk by chunk (the app sleeps 0.6 s between its three chunks).
      const chunks = await streamed(node, `/vm/${hash}/stream`);
      const text = chunks.map((c) => c.text).join('');
      assert.match(text, /^chunk 0 .*\nchunk 1 .*\nchunk 2 .*\n$/);
      assert.ok(chunks.length >= 3, `${chunks.length} data events`);
      assert.ok(chunks.at(-1)!.at - chunks[0]!.at >= 1000, 'the first chunk came before the app wrote the last');

      // WebSocket echo through the node.
      const ws = new WebSocket(`wss://127.0.0.1:${node.httpsPort}/vm/${hash}/ws`, { ca: node.ca, servername: node.domain, headers: { host: node.domain } } as WebSocket.ClientOptions);
      await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
      const replies: string[] = [];
      const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
      ws.on('message', (m) => replies.push(m.toString()));
      ws.send('one');
      ws.send('two');
      await new Promise((r) => setTimeout(r, 1500));
      ws.send('bye');
      await closed;
      assert.deepEqual(replies, ['echo: one', 'echo: two']);

      // aleph-edge stop <hash>: the next request boots a new VM; the counter goes on, the scratch is empty.
      await run(process.execPath, [join(REPO_ROOT, 'dist/src/cli.js'), 'stop', hash, '--socket', node.socket]);
      const t1 = performance.now();
      assert.deepEqual(await json(node, hash, 'state/increment'), { counter: 3 });
      const coldMs = Math.round(performance.now() - t1);
      t.diagnostic(`ASGI (FastAPI) cold start under TCG, artifacts cached: ${coldMs} ms`);
      process.stderr.write(`# qemu TCG ASGI cold start to first response: ${coldMs} ms\n`);
      const second = await json<Volumes>(node, hash, 'volumes');
      assert.deepEqual(second.scratch_before, ['lost+found'], 'the ephemeral volume is empty after a reboot');
      assert.deepEqual(await json(node, hash, 'cache/get/greeting'), { status: 200, value: 'hello cache' }, 'the cache survives a reboot');
    } finally {
      await node.close();
    }
    // A guest-API forward's socat may outlive its VM by a moment (socat -t 5).
    await until(() => processesWith(join(s.dir, 'vms')).length === 0, 10_000, 'no VM (nor guest-API forward) left after the node drained');

    node = await startNode(s, api, redis, 'node2');
    try {
      assert.deepEqual(await json(node, hash, 'state/increment'), { counter: 4 }, 'the volume survived a node restart');
      assert.deepEqual(await json(node, hash, 'cache/get/greeting'), { status: 200, value: 'hello cache' }, 'the cache survives a node restart');
    } finally {
      await node.close();
    }
  });

  it('refuses bad messages with the field at fault, before booting anything', async () => {
    const node = await startNode(s, api, redis, 'node-bad');
    try {
      const code = api.addStore(zip({ 'main.py': { text: 'app = None\n' } }));
      const cases: Array<{ edit: (c: Record<string, unknown>) => void; runtime?: string; status: number; body: RegExp }> = [
        { edit: (c) => { (c.code as Record<string, unknown>).interface = 'wasm'; }, status: 404, body: /content\.code\.interface: unsupported "wasm"/ },
        { edit: (c) => { c.volumes = [{ mount: '/scratch', ephemeral: true }]; }, status: 404, body: /content\.volumes\[0\]\.size_mib: is required/ },
        { edit: (c) => { c.volumes = [{ mount: '/var/../etc', ephemeral: true, size_mib: 1 }]; }, status: 404, body: /content\.volumes\[0\]\.mount: "\/var\/..\/etc" is not a normalized absolute mount point/ },
        { edit: (c) => { c.volumes = [{ mount: 'relative/path', name: 'x', persistence: 'host', size_mib: 1 }]; }, status: 404, body: /content\.volumes\[0\]\.mount: "relative\/path" is not a normalized absolute mount point/ },
        { edit: () => {}, runtime: api.addStore(Buffer.from('PK\x03\x04 a zip, not a root filesystem')), status: 502, body: /content\.runtime: the runtime [0-9a-f]{12} is not a squashfs image/ },
      ];
      for (const c of cases) {
        const bad = api.addProgram({ code, runtime: c.runtime ?? runtimeRef, entrypoint: 'main:app', edit: c.edit });
        const reply = await get(node, bad, '');
        assert.equal(reply.status, c.status, reply.body);
        assert.match(reply.body, c.body);
      }
      assert.deepEqual(processesWith(join(s.dir, 'vms')), [], 'nothing booted');
    } finally {
      await node.close();
    }
  });
});
