// A whole node (qemu driver, Aleph source) asked to start instances it must refuse,
// through the real CLI: a parent that is not a disk image, a size_mib smaller than
// the parent, an authorized_keys entry that is not a key, a forwarded port out of
// range in the owner's aggregate. The CLI exits 1 naming the field; nothing boots,
// nothing is kept for the next node start, no disk is made, no host port allocated.
// The node has no program kernel or initramfs (a node for instances only).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { AlephEdgeNode } from '../../src/app/index.js';
import { setLogLevel } from '../../src/common/index.js';
import { loadConfig } from '../../src/config/index.js';
import { StatusClient } from '../../src/status/index.js';
import { FakeAlephApi, SENDER } from '../fixtures/aleph-api/server.js';
import { REPO_ROOT } from '../drivers/helpers.js';
import { qemuSkipReason } from '../drivers/qemu-guest.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');
const run = promisify(execFile);
const CLI = join(REPO_ROOT, 'dist/src/cli.js');

describe('instances a node refuses to start', { skip: qemuSkipReason() || false, timeout: 120_000 }, () => {
  let dir: string;
  let api: FakeAlephApi;
  let node: AlephEdgeNode;
  let socket: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-instance-refused-'));
    api = new FakeAlephApi();
    await api.start();
    const config = join(dir, 'aleph-edge.toml');
    socket = join(dir, 'status.sock');
    await writeFile(config, [
      '[server]', 'domain = "edge.test"', 'https_listen = ["127.0.0.1:8443"]', 'http_listen = []', `status_socket = "${socket}"`,
      '[tls]', 'mode = "internal"', `storage = "${join(dir, 'certs')}"`,
      '[orchestrator]', 'driver = "qemu"',
      '[drivers.qemu]', 'accel = "tcg"', `run_dir = "${join(dir, 'vms')}"`,
      '[programs]', 'source = "aleph"', `aleph_api = "${api.url}"`, `cache_dir = "${join(dir, 'cache')}"`,
      `volumes_dir = "${join(dir, 'volumes')}"`, 'download_retries = 0', 'subscribe = false',
      '[guest_api]', 'enabled = false',
    ].join('\n') + '\n');
    const settings = await loadConfig(config);
    settings.server.httpsListen = [{ host: '127.0.0.1', port: 0 }];
    node = await AlephEdgeNode.start(settings, { version: 'test', inherited: [] });
  });
  after(async () => {
    await node?.drain();
    await api?.close();
    await rm(dir, { recursive: true, force: true });
  });

  function instance(parent: string, sizeMib: number, edit: (content: Record<string, unknown>) => void = () => {}): string {
    const fixture = JSON.parse(readFileSync(join(REPO_ROOT, 'test/fixtures/aleph-api/instance_message_from_aleph.json'), 'utf8')) as { item_content: string };
    const content = JSON.parse(fixture.item_content) as Record<string, unknown>;
    content.address = SENDER;
    content.rootfs = { parent: { ref: parent, use_latest: false }, persistence: 'host', size_mib: sizeMib };
    content.volumes = [];
    edit(content);
    return api.addMessage('INSTANCE', content).item_hash;
  }

  /** A good parent: a qcow2 of 128 MiB. */
  async function smallParent(): Promise<string> {
    const image = join(dir, 'parent.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', image, '128M']);
    return api.addStore(await readFile(image));
  }

  async function refused(hash: string, reason: RegExp): Promise<void> {
    const failed = await run(process.execPath, [CLI, 'instance', 'start', hash, '--socket', socket]).then(() => undefined, (e: { code: number; stderr: string }) => e);
    assert.ok(failed, 'the CLI failed');
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, reason);
    assert.deepEqual((await new StatusClient(socket).vms()).filter((v) => v.hash === hash && v.state !== 'failed'), []);
    // The start kept it first (the file exists), then forgot it when the boot was refused.
    const kept = JSON.parse(await readFile(join(dir, 'kept-programs.json'), 'utf8')) as { kept: Array<{ hash: string }> };
    assert.deepEqual(kept.kept.filter((k) => k.hash === hash), [], 'not kept for the next node start');
    assert.deepEqual(await readdir(join(dir, 'volumes')).catch(() => []), [], 'no disk made');
  }

  it('a parent that is not a disk image', async () => {
    await refused(instance(api.addStore(Buffer.from('just some bytes\n'.repeat(64))), 1024), /content\.rootfs\.parent \(.*\): not a disk image/);
  });

  it('size_mib smaller than the parent', async () => {
    await refused(instance(await smallParent(), 64), /content\.rootfs\.size_mib: 64 MiB is smaller than the parent image \(128 MiB\)/);
  });

  it('an authorized_keys entry that is not a key', async () => {
    const hash = instance(await smallParent(), 1024, (content) => {
      content.authorized_keys = ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHlGJRaIv/EzNT0eNqNB5DiGEbii28Fb2zCjuO/bMu7y ok', 'command="sh" ssh-ed25519 AAAA'];
    });
    await refused(hash, /content\.authorized_keys\[1\]: not an SSH public key/);
  });

  it("a forwarded port out of range in the owner's aggregate", async () => {
    const hash = instance(await smallParent(), 1024);
    api.aggregates.set(SENDER, { 'port-forwarding': { [hash]: { ports: { '70000': { tcp: true, udp: false } } } } });
    try {
      await refused(hash, new RegExp(`port-forwarding\\.${hash}\\.ports\\.70000: not a port in 1\\.\\.65535`));
    } finally {
      api.aggregates.delete(SENDER);
    }
  });
});
