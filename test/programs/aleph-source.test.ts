// programs.source = "aleph" through the whole node: a stand-in Aleph API (messages
// built from the real fixture, STORE messages, blobs, WebSocket stream), real
// downloads, real processes under bubblewrap, real HTTPS requests.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findSandbox } from '../../src/programs/aleph/index.js';
import { alive, request, until, type TestNode } from '../helpers/node.js';
import { FakeAlephApi, programZip, volumesProgramZip } from '../fixtures/aleph-api/server.js';
import { startAlephNode } from './helpers.js';

const sandbox = await findSandbox();

function hasMksquashfs(): boolean {
  try {
    execFileSync('mksquashfs', ['-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const skip = sandbox ? false : 'bubblewrap (bwrap) is not installed (.ci/setup.d/aleph.sh installs it)';

/** Host pid of the program's ready execution (the program itself sees its namespace pid). */
function hostPid(node: TestNode, hash: string): number {
  const vm = node.node.gateway.list().find((v) => v.hash === hash && v.state === 'ready');
  assert.ok(vm?.pid, 'a ready execution');
  return vm.pid;
}

function get(node: TestNode, hash: string, rest = '') {
  return request(node, { host: node.domain, path: `/vm/${hash}/${rest}` });
}

describe('programs from the Aleph network', { skip }, () => {
  let api: FakeAlephApi;
  let runtime: string;

  before(async () => {
    api = new FakeAlephApi();
    await api.start();
    runtime = api.addStore(Buffer.from('runtime image (not fetched by the process driver)'));
  });
  after(async () => {
    await api.close();
  });

  it('resolves, downloads, boots and answers; a second node start reuses the cache with zero downloads', async () => {
    const code = api.addStore(programZip('v1'));
    const data = api.addStore(Buffer.from('some data'));
    const hash = api.addProgram({ code, runtime, data: { ref: data, encoding: 'plain', mount: '/data' } });
    const before = { ...api.counts };
    const first = await startAlephNode({ api: api.url, keepCache: true });
    let pid: number;
    try {
      const reply = await get(first, hash, 'hello');
      assert.equal(reply.status, 200, reply.body);
      const body = JSON.parse(reply.body) as { version: string; custom: string; cwd: string; path: string; data: string; pid: number };
      assert.equal(body.version, 'v1');
      assert.equal(body.custom, '32'); // the message's variables
      assert.equal(body.cwd, '/opt/code');
      assert.equal(body.path, '/hello');
      assert.equal(body.data, 'some data');
      assert.equal(reply.headers['aleph-program-itemhash'], hash);
      assert.equal(reply.headers['aleph-program-code-ref'], code);
      assert.equal(api.counts.raw - before.raw, 2, 'code and data downloaded once each');
      pid = hostPid(first, hash);
      // Warm: no new download, same process.
      assert.equal((await get(first, hash)).status, 200);
      assert.equal(hostPid(first, hash), pid);
      assert.equal(api.counts.raw - before.raw, 2);
    } finally {
      await first.close();
    }
    assert.equal(alive(pid), false);

    const mark = { ...api.counts };
    const second = await startAlephNode({ api: api.url, cacheDir: first.cacheDir });
    try {
      const reply = await get(second, hash);
      assert.equal(reply.status, 200, reply.body);
      assert.equal((JSON.parse(reply.body) as { version: string }).version, 'v1');
      assert.equal(api.counts.raw, mark.raw, 'no downloads');
      assert.equal(api.counts.messages, mark.messages, 'no message lookups either: messages are immutable');
    } finally {
      await second.close();
    }
  });

  it('an unknown or malformed message is 404 with the reason', async () => {
    const node = await startAlephNode({ api: api.url });
    try {
      const unknown = await get(node, randomBytes(32).toString('hex'));
      assert.equal(unknown.status, 404);
      assert.match(unknown.body, /no program message [0-9a-f]{12} on the Aleph network/);

      const code = api.addStore(programZip('x'));
      const malformed = api.addProgram({ code, runtime, edit: (c) => { (c.resources as Record<string, unknown>).memory = 'lots'; } });
      const reply = await get(node, malformed);
      assert.equal(reply.status, 404);
      assert.match(reply.body, /malformed program message .*content\.resources\.memory: expected a number/);

      // A STORE hash is not a program.
      const notProgram = await get(node, code);
      assert.equal(notProgram.status, 404);
      assert.match(notProgram.body, /type: expected PROGRAM, got STORE/);
    } finally {
      await node.close();
    }
  });

  it('refuses an oversized archive without filling the disk, and a corrupted blob without caching it', async () => {
    const node = await startAlephNode({ api: api.url, programs: ['max_code_size = "256KiB"'] });
    try {
      // 4 MiB sent chunked: only the streamed byte count can stop it.
      const big = api.addStore(randomBytes(4 * 1024 * 1024), { chunked: true });
      const oversized = await get(node, api.addProgram({ code: big, runtime }));
      assert.equal(oversized.status, 502);
      assert.match(oversized.body, /code archive is larger than the 262144-byte limit/);

      const original = programZip('genuine');
      const tampered = Buffer.from(original);
      tampered[tampered.length - 30] ^= 0xff;
      const corrupt = api.addStore(original, { corruptWith: tampered });
      const corrupted = await get(node, api.addProgram({ code: corrupt, runtime }));
      assert.equal(corrupted.status, 502);
      assert.match(corrupted.body, /code blob does not match its hash/);

      assert.deepEqual(await readdir(path.join(node.cacheDir, 'tmp')), [], 'no partial download left');
      assert.deepEqual(await readdir(path.join(node.cacheDir, 'artifacts')), [], 'nothing cached');
    } finally {
      await node.close();
    }
  });

  it('the API being down is a clear 502, and the program boots once it is back', async () => {
    const node = await startAlephNode({ api: api.url });
    try {
      const code = api.addStore(programZip('after-outage'));
      const hash = api.addProgram({ code, runtime });
      await api.stop();
      const down = await get(node, hash);
      assert.equal(down.status, 502);
      assert.match(down.body, /could not fetch the program message: Aleph API unreachable \(connection refused\)/);
      await api.restart();
      // The boot backoff (1 s after one failure) may refuse the first retry.
      let reply = await get(node, hash);
      await until(async () => {
        if (reply.status === 200) return true;
        await new Promise((r) => setTimeout(r, 250));
        reply = await get(node, hash);
        return false;
      }, 8000, 'the program to boot after the outage');
      assert.equal((JSON.parse(reply.body) as { version: string }).version, 'after-outage');
      // The message stream reconnects too.
      await until(() => api.streamClients() > 0, 8000, 'the message stream to reconnect');
    } finally {
      await node.close();
    }
  });

  it('an amend on the message stream drains the warm execution; the next request runs the new code', async () => {
    const node = await startAlephNode({ api: api.url });
    try {
      const code = api.addStore(programZip('v1'));
      const hash = api.addProgram({ code, runtime, useLatest: true });
      const first = JSON.parse((await get(node, hash)).body) as { version: string };
      assert.equal(first.version, 'v1');
      const pid = hostPid(node, hash);
      await until(() => api.streamClients() > 0, 5000, 'the node to follow the stream');

      api.addStore(programZip('v2'), { ref: code }); // published on the stream
      await until(() => !alive(pid), 5000, 'the old execution to be drained');
      const reply = await get(node, hash);
      assert.equal(reply.status, 200);
      assert.equal((JSON.parse(reply.body) as { version: string }).version, 'v2');
      assert.equal(reply.headers['aleph-program-code-ref'], code);

      // A FORGET of the program stops it, and it is gone for good.
      const running = hostPid(node, hash);
      api.forget([hash]);
      await until(() => !alive(running), 5000, 'the forgotten program to stop');
      assert.equal((await get(node, hash)).status, 404);
    } finally {
      await node.close();
    }
  });

  it('mounts volumes: immutable (squashfs) read-only, ephemeral sized, persistent surviving a restart', { skip: hasMksquashfs() ? false : 'mksquashfs is not installed' }, async () => {
    const src = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-volume-'));
    await writeFile(path.join(src, 'hello'), 'from the immutable volume');
    execFileSync('mksquashfs', [src, path.join(src, '..', `${path.basename(src)}.img`), '-noappend', '-quiet']);
    const image = await readFile(path.join(src, '..', `${path.basename(src)}.img`));
    await rm(src, { recursive: true, force: true });
    await rm(path.join(src, '..', `${path.basename(src)}.img`), { force: true });
    const volume = api.addStore(image);
    const hash = api.addProgram({
      code: api.addStore(volumesProgramZip()), runtime,
      volumes: [
        { mount: '/opt/venv', ref: volume, use_latest: false },
        { mount: '/scratch', ephemeral: true, size_mib: 1 },
        { mount: '/var/lib/state', name: 'state', persistence: 'host', size_mib: 5 },
      ],
    });
    type Report = { immutable: string; count: number; ephemeral: string; readOnly: string };
    const first = await startAlephNode({ api: api.url, keepCache: true });
    try {
      const report = JSON.parse((await get(first, hash, 'report')).body) as Report;
      assert.deepEqual(report, { immutable: 'from the immutable volume', count: 1, ephemeral: 'ENOSPC', readOnly: 'EROFS' });
      assert.equal((JSON.parse((await get(first, hash, 'report')).body) as Report).count, 2);
    } finally {
      await first.close();
    }
    const second = await startAlephNode({ api: api.url, cacheDir: first.cacheDir });
    try {
      assert.equal((JSON.parse((await get(second, hash, 'report')).body) as Report).count, 3, 'the persistent volume survived');
    } finally {
      await second.close();
    }
  });

  it('with worker processes, the headers come through the IPC lease too', async () => {
    const node = await startAlephNode({ api: api.url, workers: 2 });
    try {
      const code = api.addStore(programZip('workers'));
      const hash = api.addProgram({ code, runtime });
      const reply = await get(node, hash);
      assert.equal(reply.status, 200, reply.body);
      assert.equal(reply.headers['aleph-program-itemhash'], hash);
      assert.equal(reply.headers['aleph-program-code-ref'], code);
    } finally {
      await node.close();
    }
  });

  it('refuses to run downloaded code with the process driver unless allowed', async () => {
    const node = await startAlephNode({ api: api.url, allowProcess: false });
    try {
      const code = api.addStore(programZip('nope'));
      const before = api.counts.raw;
      const reply = await get(node, api.addProgram({ code, runtime }));
      assert.equal(reply.status, 502);
      assert.match(reply.body, /allow_process_for_network = true and bubblewrap/);
      assert.equal(api.counts.raw, before, 'nothing downloaded');
    } finally {
      await node.close();
    }
  });
});
