// A real instance under qemu TCG: an INSTANCE message on the stand-in Aleph API whose
// rootfs.parent is the Debian 12 test image (guest/instance-image: GRUB, the cloud
// kernel, cloud-init, openssh-server), started with the real CLI over the status
// socket. One boot covers: the node makes the disk and the NoCloud drive, cloud-init
// applies the hostname and the owner's key, `ssh -i key -p <forwarded port>` runs
// commands in the VM, the forwarded ports show in /v2/about/executions/list, the VM
// is not stopped for idleness, its serial console reaches its log, its volumes
// (immutable from a STORE, ephemeral, persistent) are disks cloud-init mounted where
// the message says. Then `instance stop` (an ACPI shutdown the guest performs), a node
// restart, a second boot: the files written before on the root disk and the persistent
// volume are still there, the ephemeral volume is empty again, on the same host port.
// `instance erase` removes the disk and the volume. A request for the instance's hash
// does not start it. The node has no program kernel or initramfs: instances only.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { AlephEdgeNode } from '../../src/app/index.js';
import { addLogSink, setLogLevel, shortHash, type LogRecord } from '../../src/common/index.js';
import { loadConfig } from '../../src/config/index.js';
import { hostnameOf } from '../../src/programs/aleph/index.js';
import { StatusClient } from '../../src/status/index.js';
import { FakeAlephApi, SENDER } from '../fixtures/aleph-api/server.js';
import { REPO_ROOT } from '../drivers/helpers.js';
import { qemuSkipReason } from '../drivers/qemu-guest.js';
import { instanceImage, type InstanceImage } from '../helpers/instance-image.js';
import { request, until, type TestNode } from '../helpers/node.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');
const run = promisify(execFile);
const skip = qemuSkipReason();
const CLI = join(REPO_ROOT, 'dist/src/cli.js');
/**
 * How long a boot may take to reach SSH under TCG: minutes on an idle machine, much
 * more when the machine is shared (TCG gets what CPU is left); only a hung boot hits it.
 */
const SSH_WAIT_MS = 45 * 60_000;

interface Ctx {
  dir: string;
  image: InstanceImage;
  key: string;
  publicKey: string;
}

async function startNode(c: Ctx, api: FakeAlephApi, name: string): Promise<TestNode> {
  const dir = join(c.dir, name);
  await mkdir(dir, { recursive: true });
  const config = join(dir, 'aleph-edge.toml');
  await writeFile(config, [
    '[server]', 'domain = "edge.test"', 'https_listen = ["127.0.0.1:8443"]', 'http_listen = []',
    `status_socket = "${join(dir, 'status.sock')}"`, 'drain_timeout = "5s"',
    '[tls]', 'mode = "internal"', `storage = "${join(dir, 'certs')}"`,
    // A short idle timeout: an instance must outlive it. A long stop grace: the ACPI shutdown is asserted, and a loaded machine must not turn it into a forced stop.
    '[orchestrator]', 'driver = "qemu"', 'idle_timeout = "2s"', 'boot_timeout = "600s"', 'stop_grace = "600s"', 'memory_budget_mib = 4096',
    // No kernel or initramfs: a node for instances only (they boot their own).
    '[drivers.qemu]', 'accel = "tcg"', `run_dir = "${join(c.dir, 'vms')}"`,
    '[programs]', 'source = "aleph"', `aleph_api = "${api.url}"`, `cache_dir = "${join(c.dir, 'cache')}"`,
    `volumes_dir = "${join(c.dir, 'volumes')}"`, 'download_retries = 1', 'download_timeout = "300s"', 'subscribe = false',
    '[guest_api]', 'enabled = false',
  ].join('\n') + '\n');
  const settings = await loadConfig(config);
  settings.server.httpsListen = [{ host: '127.0.0.1', port: 0 }];
  const node = await AlephEdgeNode.start(settings, { version: 'test', inherited: [] });
  return {
    node, settings, dir, configFile: config, domain: 'edge.test', httpsPort: node.port('https')!, httpPort: 0,
    socket: settings.server.statusSocket, ca: await readFile(join(dir, 'certs/internal/ca.crt'), 'utf8'), close: () => node.drain(),
  };
}

async function cli(node: TestNode, ...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [CLI, ...args, '--socket', node.socket], { timeout: 20 * 60_000 });
  return stdout.trim();
}

function ssh(c: Ctx, port: number, command: string, connectTimeoutS = 20, runS = 60): Promise<{ stdout: string }> {
  return run('ssh', [
    '-i', c.key, '-p', String(port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'LogLevel=ERROR', '-o', `ConnectTimeout=${connectTimeoutS}`, 'root@127.0.0.1', command,
  ], { timeout: (connectTimeoutS + runS) * 1000 });
}

/** Polls until sshd in the VM accepts our key (cloud-init has run), then returns the hostname it reports. */
async function sshReady(c: Ctx, port: number): Promise<string> {
  let hostname = '';
  await until(async () => {
    try {
      hostname = (await ssh(c, port, 'hostname')).stdout.trim();
      return true;
    } catch {
      return false;
    }
  }, SSH_WAIT_MS, 'ssh into the instance');
  return hostname;
}

/** The volumes' mounts as the guest's kernel has them: "<mount point> <device> <type> <options>". */
const VOLUME_MOUNTS = `awk '$1 ~ /^\\/dev\\/vd[c-e]$/ { print $2, $1, $3, $4 }' /proc/mounts`;

type Mapped = Record<string, { host: number; tcp: boolean; udp: boolean }>;

async function executionsList(node: TestNode): Promise<Record<string, { vm_type: string; running: boolean; networking: { mapped_ports: Mapped } }>> {
  const reply = await request(node, { host: node.domain, path: '/v2/about/executions/list' });
  assert.equal(reply.status, 200, reply.body);
  return JSON.parse(reply.body) as Awaited<ReturnType<typeof executionsList>>;
}

describe('an Aleph instance in qemu (TCG): cloud-init, ssh, persistence, erase', { skip: skip || false, timeout: 150 * 60_000 }, () => {
  let c: Ctx;
  let api: FakeAlephApi;
  let node: TestNode | undefined;
  let hash: string;
  const records: LogRecord[] = [];
  const removeSink = addLogSink((r) => {
    if (r.component === 'vm' || r.component.startsWith('driver.qemu') || r.component === 'orchestrator') records.push(r);
  });

  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-instance-'));
    const image = await instanceImage();
    const key = join(dir, 'id_ed25519');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'owner@test', '-f', key]);
    c = { dir, image, key, publicKey: (await readFile(`${key}.pub`, 'utf8')).trim() };
    api = new FakeAlephApi();
    await api.start();
    const parent = api.addStoreFile(image.path, image.sha256, image.size);
    const content = JSON.parse((JSON.parse(await readFile(join(REPO_ROOT, 'test/fixtures/aleph-api/instance_message_from_aleph.json'), 'utf8')) as { item_content: string }).item_content) as Record<string, unknown>;
    content.address = SENDER;
    content.rootfs = { parent: { ref: parent, use_latest: false }, persistence: 'host', size_mib: 3072 };
    content.authorized_keys = [c.publicKey];
    content.environment = { internet: false, aleph_api: false };
    content.resources = { vcpus: 2, memory: 1024, seconds: 30 };
    // An immutable volume: a squashfs with one file, a STORE like the parent.
    await mkdir(join(dir, 'ro'));
    await writeFile(join(dir, 'ro', 'hello.txt'), 'from an immutable volume\n');
    await run('mksquashfs', [join(dir, 'ro'), join(dir, 'ro.squashfs'), '-quiet', '-noappend', '-all-root']);
    content.volumes = [
      { ref: api.addStore(await readFile(join(dir, 'ro.squashfs'))), use_latest: false, mount: '/opt/ro' },
      { ephemeral: true, mount: '/mnt/scratch', size_mib: 64 },
      { persistence: 'host', name: 'keep', mount: '/var/lib/keep', size_mib: 128 },
    ];
    delete content.replaces;
    hash = api.addMessage('INSTANCE', content).item_hash;
    api.aggregates.set(SENDER, { 'port-forwarding': { [hash]: { ports: { '8080': { tcp: true, udp: false } } } } });
    node = await startNode(c, api, 'first');
  });

  after(async () => {
    removeSink();
    await node?.close();
    await api?.close();
    if (c) await rm(c.dir, { recursive: true, force: true });
  });

  let sshPort = 0;

  it('a request for the instance does not start it', async () => {
    const reply = await request(node!, { host: node!.domain, path: `/vm/${hash}/` });
    assert.equal(reply.status, 404, reply.body);
    assert.match(reply.body, /instance/);
    assert.deepEqual((await new StatusClient(node!.socket).vms()).filter((e) => e.hash === hash), []);
  });

  it('starts with `aleph-edge instance start`; ssh with the owner key reaches the VM cloud-init named', async () => {
    assert.equal(await cli(node!, 'instance', 'start', hash), `started ${hash}`);
    const listed = (await executionsList(node!))[hash];
    assert.ok(listed, 'listed in /v2/about/executions/list');
    assert.equal(listed.vm_type, 'instance');
    assert.equal(listed.running, true);
    assert.deepEqual(Object.keys(listed.networking.mapped_ports).sort(), ['22', '8080']);
    assert.deepEqual(listed.networking.mapped_ports['8080'], { host: listed.networking.mapped_ports['8080']!.host, tcp: true, udp: false });
    sshPort = listed.networking.mapped_ports['22']!.host;

    assert.equal(await sshReady(c, sshPort), hostnameOf(hash));
    // sshd comes up while cloud-init still runs its later stages: let it finish first.
    await ssh(c, sshPort, 'cloud-init status --wait >/dev/null || true', 20, SSH_WAIT_MS / 1000);
    const { stdout } = await ssh(c, sshPort, 'cat /root/.ssh/authorized_keys; findmnt -no SOURCE /; echo instance-data > /root/marker; sync');
    assert.ok(stdout.includes(c.publicKey), 'the owner key is root\'s');
    assert.match(stdout, /^\/dev\/vda1$/m);
  });

  it("sees its volumes as disks after the root disk and the cloud-init drive, mounted where the message says", async () => {
    const { stdout } = await ssh(c, sshPort, [
      'for d in vdc vdd vde; do echo "$d $(cat /sys/block/$d/serial)"; done',
      VOLUME_MOUNTS,
      'cat /opt/ro/hello.txt',
      'echo kept > /var/lib/keep/file; echo scratch > /mnt/scratch/file; sync',
    ].join('; '));
    assert.match(stdout, /^vdc vol0\nvdd vol1\nvde vol2$/m, 'in the message\'s order, each with its serial');
    assert.match(stdout, /^\/opt\/ro \/dev\/vdc squashfs ro,/m, stdout);
    assert.match(stdout, /^\/mnt\/scratch \/dev\/vdd ext4 rw,/m, stdout);
    assert.match(stdout, /^\/var\/lib\/keep \/dev\/vde ext4 rw,/m, stdout);
    assert.match(stdout, /^from an immutable volume$/m);
  });

  it('outlived the idle timeout, and its serial console reached its log', async () => {
    const execution = (await new StatusClient(node!.socket).vms()).find((e) => e.hash === hash);
    assert.equal(execution?.state, 'ready');
    const consoleLines = records.filter((r) => r.component === 'vm' && r.fields.hash === shortHash(hash) && r.fields.stream === 'console').map((r) => r.message);
    assert.ok(consoleLines.some((l) => /Booting `Debian GNU\/Linux 12'|Linux version 6\./.test(l)), 'kernel lines on the console');
    assert.ok(consoleLines.some((l) => /cloud-init/.test(l)), 'cloud-init lines on the console');
  });

  it('`instance stop` shuts the guest down (ACPI); the disk stays; after a node restart the file is still there on the same port', async () => {
    const before = records.length;
    assert.equal(await cli(node!, 'instance', 'stop', hash), `stopped ${hash}`);
    const shutdown = records.slice(before).filter((r) => r.component === 'vm' && r.fields.hash === shortHash(hash)).map((r) => r.message);
    assert.ok(shutdown.some((l) => /reboot: Power down|Reached target .*Power-Off|System Power Off/.test(l)), `the guest powered itself off:\n${shutdown.slice(-10).join('\n')}`);
    assert.ok(!records.slice(before).some((r) => /did not shut down in time/.test(r.message)), 'no forced stop');
    assert.ok((await stat(join(c.dir, 'volumes', hash, 'rootfs.qcow2'))).size > 0);
    assert.ok((await stat(join(c.dir, 'volumes', hash, 'keep.img'))).isFile(), 'the persistent volume stays');

    await node!.close();
    node = await startNode(c, api, 'second');
    assert.equal(await cli(node, 'instance', 'start', hash), `started ${hash}`);
    const listed = (await executionsList(node))[hash]!;
    assert.equal(listed.networking.mapped_ports['22']!.host, sshPort, 'the same host port after a restart');
    await sshReady(c, sshPort);
    // The volumes are mounted from fstab (cloud-init wrote it at the first boot), nofail: not before sshd, so wait for the boot to finish.
    const { stdout } = await ssh(c, sshPort, [
      'systemctl is-system-running --wait >/dev/null',
      'cat /root/marker /var/lib/keep/file; test -e /mnt/scratch/file && echo scratch-kept || echo scratch-empty',
      // What the guest saw, for a failure's message.
      `echo ---; ${VOLUME_MOUNTS}; grep vd /etc/fstab; systemctl --failed --no-legend`,
    ].join('; '), 20, SSH_WAIT_MS / 1000);
    const [found, seen] = stdout.split('---\n');
    assert.deepEqual(found!.trim().split('\n'), ['instance-data', 'kept', 'scratch-empty'], seen);
  });

  it('`instance erase` stops it and removes its disk', async () => {
    assert.equal(await cli(node!, 'instance', 'erase', hash), `erased ${hash}`);
    await assert.rejects(stat(join(c.dir, 'volumes', hash)));
    assert.equal((await executionsList(node!))[hash], undefined);
    assert.equal(await cli(node!, 'instance', 'erase', hash), `${hash} had nothing to erase`);
  });
});
