// INSTANCE messages: the reference's example message, field checks that name the
// field (authorized_keys with keys made by ssh-keygen, rootfs, port forwarding), the
// hostname (checked against Python's base64), and bad parents refused by the source
// with nothing left behind.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BootFailedError } from '../../src/common/index.js';
import { defaultAlephSettings, loadConfig } from '../../src/config/index.js';
import { AlephProgramSource, checkAuthorizedKey, hostnameOf, MessageError, parseInstanceMessage, parsePortForwarding } from '../../src/programs/aleph/index.js';
import { FakeAlephApi, SENDER } from '../fixtures/aleph-api/server.js';
import { ROOT } from '../helpers/paths.js';

const raw = JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/aleph-api/instance_message_from_aleph.json'), 'utf8')) as Record<string, unknown>;

function withContent(content: Record<string, unknown>): { message: Record<string, unknown>; hash: string } {
  const itemContent = JSON.stringify(content);
  const hash = createHash('sha256').update(itemContent).digest('hex');
  return { message: { ...raw, item_content: itemContent, item_hash: hash }, hash };
}

const fixtureContent = (): Record<string, unknown> => JSON.parse(raw.item_content as string) as Record<string, unknown>;

let keys: { ed25519: string; rsa: string; ecdsa: string };
let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'aleph-edge-test-instance-msg-'));
  const make = (type: string, extra: string[] = []) => {
    const file = path.join(dir, `id_${type}`);
    execFileSync('ssh-keygen', ['-q', '-t', type, ...extra, '-N', '', '-C', 'owner@example', '-f', file]);
    return readFileSync(`${file}.pub`, 'utf8').trim();
  };
  keys = { ed25519: make('ed25519'), rsa: make('rsa', ['-b', '2048']), ecdsa: make('ecdsa') };
});
after(() => rm(dir, { recursive: true, force: true }));

function fails(fn: () => unknown, field: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof MessageError && field.test(e.message), `expected a MessageError matching ${field}`);
}

describe('INSTANCE messages', () => {
  it("reads the reference's example: rootfs, resources, volumes, environment, from item_content", () => {
    const { message, hash } = withContent(fixtureContent());
    const spec = parseInstanceMessage(message, hash);
    assert.deepEqual(spec.rootfs, { parent: { ref: '549ec451d9b099cad112d4aaa2c00ac40fb6729a92ff252ff22eef0b5c3cb613', useLatest: true }, persistence: 'host', sizeMib: 20000 });
    assert.deepEqual(spec.resources, { vcpus: 1, memoryMib: 128 });
    assert.equal(spec.internet, true);
    assert.equal(spec.address, SENDER);
    assert.deepEqual(spec.variables, { VM_CUSTOM_NUMBER: '32' });
    assert.deepEqual(spec.volumes.map((v) => v.kind), ['immutable', 'persistent']);
    assert.deepEqual(spec.authorizedKeys, []);
  });

  it('a PROGRAM hash is not an INSTANCE (type checked)', () => {
    const { message, hash } = withContent(fixtureContent());
    fails(() => parseInstanceMessage({ ...message, type: 'PROGRAM' }, hash), /^type: expected INSTANCE/);
  });

  it('accepts public keys ssh-keygen made (ed25519, rsa, ecdsa)', () => {
    const { message, hash } = withContent({ ...fixtureContent(), authorized_keys: [keys.ed25519, keys.rsa, keys.ecdsa] });
    assert.deepEqual(parseInstanceMessage(message, hash).authorizedKeys, [keys.ed25519, keys.rsa, keys.ecdsa]);
  });

  it('refuses an authorized_keys entry that is not a key, naming the entry', () => {
    const [, ed25519Blob] = keys.ed25519.split(' ');
    const bad = [
      'not a key at all',
      'ssh-ed25519 !!!notbase64',
      `ssh-rsa ${ed25519Blob}`, // an ed25519 blob under another type
      `command="rm -rf /" ${keys.ed25519}`, // options are not a plain key
      `${keys.ed25519}\nssh-ed25519 AAAA`, // a second line smuggled in
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5', // the type and nothing else
    ];
    for (const entry of bad) {
      assert.ok(checkAuthorizedKey(entry), `accepted ${JSON.stringify(entry)}`);
      const { message, hash } = withContent({ ...fixtureContent(), authorized_keys: [keys.ed25519, entry] });
      fails(() => parseInstanceMessage(message, hash), /^content\.authorized_keys\[1\]: not an SSH public key/);
    }
    const { message, hash } = withContent({ ...fixtureContent(), authorized_keys: [42] });
    fails(() => parseInstanceMessage(message, hash), /^content\.authorized_keys\[0\]: expected a string/);
  });

  it('refuses a rootfs without a usable size or parent, confidential instances, and volumes that collide', () => {
    const cases: Array<[(c: Record<string, unknown>) => void, RegExp]> = [
      [(c) => delete (c.rootfs as Record<string, unknown>).size_mib, /^content\.rootfs\.size_mib: is required/],
      [(c) => ((c.rootfs as Record<string, unknown>).size_mib = 0), /^content\.rootfs\.size_mib: 0 is out of range/],
      [(c) => ((c.rootfs as Record<string, unknown>).size_mib = 10.5), /^content\.rootfs\.size_mib: expected an integer/],
      [(c) => ((c.rootfs as Record<string, unknown>).parent = { ref: 'nope' }), /^content\.rootfs\.parent\.ref: expected a 64-hex item hash/],
      [(c) => ((c.rootfs as Record<string, unknown>).persistence = 'cloud'), /^content\.rootfs\.persistence: unsupported "cloud"/],
      [(c) => delete c.rootfs, /^content\.rootfs: expected an object/],
      [(c) => ((c.environment as Record<string, unknown>).trusted_execution = { firmware: 'x' }), /^content\.environment\.trusted_execution: confidential instances/],
      // Volumes: one host image per persistent name, one volume per mount point.
      [(c) => (c.volumes = [
        { persistence: 'host', name: 'data', mount: '/a', size_mib: 8 },
        { persistence: 'host', name: 'data', mount: '/b', size_mib: 8 },
      ]), /^content\.volumes\[1\]\.name: "data" is used by another persistent volume/],
      [(c) => (c.volumes = [{ ephemeral: true, mount: '/a', size_mib: 8 }, { ephemeral: true, mount: '/a', size_mib: 8 }]), /^content\.volumes: mount point \/a used twice/],
      [(c) => (c.volumes = [{ ephemeral: true, mount: '/a' }]), /^content\.volumes\[0\]\.size_mib: is required/],
    ];
    for (const [edit, field] of cases) {
      const content = fixtureContent();
      edit(content);
      const { message, hash } = withContent(content);
      fails(() => parseInstanceMessage(message, hash), field);
    }
  });

  it("reads the owner's port-forwarding aggregate (the reference's format); 22/tcp always", () => {
    const hash = 'ab'.repeat(32);
    assert.deepEqual(parsePortForwarding(undefined, hash), [{ port: 22, tcp: true, udp: false }]);
    assert.deepEqual(parsePortForwarding({ [hash]: { ports: { '8080': { tcp: true, udp: false }, '53': { tcp: false, udp: true }, '22': { tcp: false, udp: true }, '9': { tcp: false, udp: false } } } }, hash), [
      { port: 22, tcp: true, udp: true },
      { port: 53, tcp: false, udp: true },
      { port: 8080, tcp: true, udp: false },
    ]);
    // Another VM's entry is not this one's.
    assert.deepEqual(parsePortForwarding({ ['cd'.repeat(32)]: { ports: { '80': { tcp: true } } } }, hash), [{ port: 22, tcp: true, udp: false }]);
  });

  it('refuses a forwarded port outside 1..65535, naming the entry', () => {
    const hash = 'ab'.repeat(32);
    for (const port of ['0', '65536', '70000', 'http', '-1', '8080.5']) {
      assert.throws(() => parsePortForwarding({ [hash]: { ports: { [port]: { tcp: true, udp: false } } } }, hash), (e: unknown) =>
        e instanceof MessageError && e.message.startsWith(`port-forwarding.${hash}.ports.${port}: not a port in 1..65535`));
    }
    assert.throws(() => parsePortForwarding({ [hash]: { ports: { '80': { tcp: 'yes' } } } }, hash), /ports\.80\.tcp: expected true or false/);
  });

  it('the hostname is the hash in base32 (as Python base64.b32encode, lowercased, unpadded)', () => {
    const hash = createHash('sha256').update('an instance').digest('hex');
    const python = execFileSync('python3', ['-c', 'import base64,sys; print(base64.b32encode(bytes.fromhex(sys.argv[1])).decode().strip("=").lower())', hash], { encoding: 'utf8' }).trim();
    assert.equal(hostnameOf(hash), python);
  });
});

describe('instance parents checked by the source', () => {
  let api: FakeAlephApi;
  let work: string;
  let source: AlephProgramSource;

  before(async () => {
    api = new FakeAlephApi();
    await api.start();
    work = await mkdtemp(path.join(tmpdir(), 'aleph-edge-test-instance-src-'));
    source = await AlephProgramSource.create({
      api: api.url,
      settings: { ...defaultAlephSettings(), cacheDir: path.join(work, 'cache'), volumesDir: path.join(work, 'volumes'), downloadRetries: 0 },
      driver: 'qemu',
      retryBaseMs: 10,
    });
  });
  after(async () => {
    await api.close();
    await rm(work, { recursive: true, force: true });
  });

  function instance(parent: string, sizeMib: number, volumes: unknown[] = []): string {
    const content = fixtureContent();
    content.address = SENDER;
    content.rootfs = { parent: { ref: parent, use_latest: false }, persistence: 'host', size_mib: sizeMib };
    content.volumes = volumes;
    return api.addMessage('INSTANCE', content).item_hash;
  }

  async function refused(hash: string, field: RegExp): Promise<void> {
    await assert.rejects(source.resolve(hash), (e: unknown) => e instanceof BootFailedError && field.test(e.message), `expected ${field}`);
    // Nothing of this instance on disk: no disk, no ports.
    assert.deepEqual(await readdir(path.join(work, 'volumes')).catch(() => []), []);
  }

  it('refuses a parent that is not a disk image', async () => {
    await refused(instance(api.addStore(Buffer.from('#!/bin/sh\necho not a disk\n'.repeat(100))), 100), /^content\.rootfs\.parent \([0-9a-f]+…?\): not a disk image/);
  });

  it('refuses a qcow2 parent that names a backing file of its own (it would open a host path)', async () => {
    const image = path.join(work, 'sneaky.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', '/etc/hostname', image, '1M']);
    await refused(instance(api.addStore(await readFile(image)), 100), /^content\.rootfs\.parent \(.*\): the image names a backing file/);
  });

  it('refuses size_mib smaller than the parent', async () => {
    const image = path.join(work, 'parent.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '64M']);
    await refused(instance(api.addStore(await readFile(image)), 32), /^content\.rootfs\.size_mib: 32 MiB is smaller than the parent image \(64 MiB\)/);
  });

  it("refuses the owner's malformed port forwarding, naming the entry", async () => {
    const image = path.join(work, 'ok.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '16M']);
    const hash = instance(api.addStore(await readFile(image)), 64);
    api.aggregates.set(SENDER, { 'port-forwarding': { [hash]: { ports: { '99999': { tcp: true, udp: false } } } } });
    await refused(hash, new RegExp(`^the owner's port-forwarding\\.${hash}\\.ports\\.99999: not a port in 1\\.\\.65535`));
  });

  it('programs.max_rootfs_size caps the parent download', async () => {
    const config = path.join(work, 'cap.toml');
    await writeFile(config, `[server]\ndomain = "edge.test"\n[tls]\nmode = "internal"\nstorage = "${path.join(work, 'certs')}"\n[programs]\nsource = "aleph"\ncache_dir = "${path.join(work, 'cap-cache')}"\nmax_rootfs_size = "100KiB"\n`);
    const capped = (await loadConfig(config)).programs.aleph!;
    assert.equal(capped.maxRootfsBytes, 100 * 1024);
    const small = await AlephProgramSource.create({ api: api.url, settings: { ...capped, volumesDir: path.join(work, 'volumes'), downloadRetries: 0 }, driver: 'qemu', retryBaseMs: 10 });
    const image = path.join(work, 'big.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '1G']);
    execFileSync('qemu-io', ['-c', 'write -P 0x5a 0 512k', image]);
    await assert.rejects(small.resolve(instance(api.addStore(await readFile(image)), 2048)), (e: unknown) =>
      e instanceof BootFailedError && /could not download the rootfs .*larger than the 102400-byte limit/.test(e.message));
  });

  it('maps a good instance to a persistent machine launch (raw parent with a partition table)', async () => {
    const image = path.join(work, 'disk.raw');
    await writeFile(image, Buffer.alloc(8 * 1024 * 1024));
    execFileSync('sfdisk', ['--quiet', image], { input: 'start=2048, type=83\n' });
    const hash = instance(api.addStore(await readFile(image)), 64);
    api.aggregates.set(SENDER, { 'port-forwarding': { [hash]: { ports: { '8080': { tcp: true, udp: true } } } } });
    const program = await source.resolve(hash);
    assert.equal(program.persistent, true);
    assert.equal(program.launch.kind, 'machine');
    if (program.launch.kind !== 'machine') return;
    assert.equal(program.launch.parentFormat, 'raw');
    assert.equal(program.launch.sizeMib, 64);
    assert.equal(program.launch.hostname, hostnameOf(hash));
    assert.equal(program.launch.disk, path.join(work, 'volumes', hash, 'rootfs.qcow2'));
    assert.deepEqual(program.launch.ports, [{ port: 22, tcp: true, udp: false }, { port: 8080, tcp: true, udp: true }]);
  });

  it("resolves the instance's volumes in the message's order: the immutable one downloaded, the persistent one beside the disk", async () => {
    const image = path.join(work, 'vol-parent.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '16M']);
    const blob = Buffer.from('an immutable volume, any bytes\n');
    const hash = instance(api.addStore(await readFile(image)), 64, [
      { persistence: 'host', name: 'keep', mount: '/var/lib/keep', size_mib: 32 },
      { ref: api.addStore(blob), use_latest: false, mount: '/opt/ro' },
      { ephemeral: true, mount: '/tmp/scratch', size_mib: 8 },
    ]);
    const program = await source.resolve(hash);
    assert.equal(program.launch.kind, 'machine');
    if (program.launch.kind !== 'machine') return;
    const [keep, ro, scratch] = program.launch.volumes;
    assert.deepEqual(keep, { mount: '/var/lib/keep', kind: 'persistent', source: path.join(work, 'volumes', hash, 'keep.img'), sizeMib: 32, readOnly: false });
    assert.equal(ro?.kind, 'immutable');
    assert.equal(ro?.readOnly, true);
    assert.deepEqual(await readFile(ro!.source), blob, 'the STORE blob, as downloaded');
    assert.deepEqual(scratch, { mount: '/tmp/scratch', kind: 'ephemeral', source: '', sizeMib: 8, readOnly: false });
    // Resolving makes nothing on disk: the driver makes the images at boot.
    assert.deepEqual(await readdir(path.join(work, 'volumes')).catch(() => []), []);
  });

  it('refuses an immutable volume that is not on the network; nothing is made', async () => {
    const image = path.join(work, 'vol-parent2.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '16M']);
    const hash = instance(api.addStore(await readFile(image)), 64, [{ ref: 'cd'.repeat(32), use_latest: false, mount: '/opt/ro' }]);
    await assert.rejects(source.resolve(hash), /no volume STORE message cdcdcdcdcdcd/);
    assert.deepEqual(await readdir(path.join(work, 'volumes')).catch(() => []), []);
  });

  it('resolves instances under the firecracker driver too, and refuses them under the process driver', async () => {
    const image = path.join(work, 'fc.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '16M']);
    const hash = instance(api.addStore(await readFile(image)), 64);
    const settings = { ...defaultAlephSettings(), cacheDir: path.join(work, 'cache'), volumesDir: path.join(work, 'volumes'), downloadRetries: 0 };
    const firecracker = await AlephProgramSource.create({ api: api.url, settings, driver: 'firecracker', retryBaseMs: 10 });
    assert.equal((await firecracker.resolve(hash)).launch.kind, 'machine');
    const processOnly = await AlephProgramSource.create({ api: api.url, settings, driver: 'process', retryBaseMs: 10 });
    await assert.rejects(processOnly.resolve(hash), (e: unknown) => e instanceof BootFailedError && /instances run under the qemu or firecracker driver; this node's driver is "process"/.test(e.message));
  });
});
