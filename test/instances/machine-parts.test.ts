// The pieces an instance boots with, through the real tools: the cloud-init NoCloud
// drive (genisoimage; read back with isoinfo and Python's YAML parser), the qcow2
// overlay over the parent (qemu-img, qemu-io: data written survives a second start
// and the artifact cache losing the parent; erase removes it), and the host ports
// kept for the VM across starts.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { allocatePorts, cloudInitFiles, ensureMachineDisk, eraseMachine, machineDrives, volumeMounts, writeCloudInitDrive } from '../../src/drivers/machine/index.js';
import { machineArgs } from '../../src/drivers/qemu/index.js';
import type { MachineLaunch } from '../../src/programs/index.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'aleph-edge-test-machine-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHlGJRaIv/EzNT0eNqNB5DiGEbii28Fb2zCjuO/bMu7y owner@example';

function yaml(text: string): unknown {
  return JSON.parse(execFileSync('python3', ['-c', 'import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))'], { input: text, encoding: 'utf8' }));
}

describe('cloud-init NoCloud drive', () => {
  const spec = {
    hostname: 'vmhostname', authorizedKeys: [KEY], internet: false,
    network: { ipv4: '10.0.2.15/24', gateway4: '10.0.2.2', ipv6: 'fd00::11/124', gateway6: 'fd00::10', nameservers: ['10.0.2.3'] },
  };

  it("has the reference's shapes: meta-data, #cloud-config user-data, network-config v2 matched by driver", () => {
    const files = cloudInitFiles(spec);
    assert.deepEqual(yaml(files['meta-data']), { 'instance-id': 'iid-instance-vmhostname', 'local-hostname': 'vmhostname' });
    assert.ok(files['user-data'].startsWith('#cloud-config\n'));
    assert.deepEqual(yaml(files['user-data']), { hostname: 'vmhostname', disable_root: false, ssh_pwauth: false, ssh_authorized_keys: [KEY], resize_rootfs: true });
    assert.deepEqual(yaml(files['network-config']), {
      version: 2,
      ethernets: { eth0: { match: { driver: 'virtio_net' }, addresses: ['10.0.2.15/24', 'fd00::11/124'], gateway4: '10.0.2.2', gateway6: 'fd00::10', nameservers: { addresses: ['10.0.2.3'] } } },
    });
    // With the internet, packages are updated and the guest agent installed, as the reference does.
    const online = yaml(cloudInitFiles({ ...spec, internet: true })['user-data']) as Record<string, unknown>;
    assert.equal(online.package_update, true);
    assert.deepEqual(online.packages, ['qemu-guest-agent']);
  });

  it('is an ISO 9660 volume labelled cidata holding the three files', async () => {
    const iso = path.join(dir, 'cidata.iso');
    await writeCloudInitDrive(iso, spec);
    assert.match(execFileSync('isoinfo', ['-d', '-i', iso], { encoding: 'utf8' }), /^Volume id: cidata$/m);
    for (const [name, text] of Object.entries(cloudInitFiles(spec))) {
      assert.equal(execFileSync('isoinfo', ['-R', '-i', iso, '-x', `/${name}`], { encoding: 'utf8' }), text, name);
    }
    // blkid (what cloud-init's ds-identify uses) sees the label.
    assert.match(execFileSync('blkid', ['-p', '-o', 'export', iso], { encoding: 'utf8' }), /^LABEL=cidata$/m);
  });
});

describe('instance disk', () => {
  function launch(name: string, parent: string, sizeMib: number): MachineLaunch {
    const stateDir = path.join(dir, 'volumes', name);
    return {
      kind: 'machine', parent, parentFormat: 'qcow2', disk: path.join(stateDir, 'rootfs.qcow2'), sizeMib, stateDir,
      hostname: name, authorizedKeys: [], ports: [{ port: 22, tcp: true, udp: false }], internet: false, volumes: [],
    };
  }
  const info = (file: string) => JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', file], { encoding: 'utf8' })) as Record<string, unknown>;

  it('is a qcow2 overlay of size_mib over a link to the parent, kept across starts and the parent leaving the cache; erase removes it', async () => {
    const cached = path.join(dir, 'cache-blob');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', cached, '64M']);
    execFileSync('qemu-io', ['-c', 'write -P 0x11 1M 64k', cached]); // a byte of the parent
    const l = launch('one', cached, 256);
    assert.deepEqual(await ensureMachineDisk(l), { created: true });
    const disk = info(l.disk);
    assert.equal(disk.format, 'qcow2');
    assert.equal(disk['virtual-size'], 256 * 1024 * 1024);
    assert.equal(disk['backing-filename'], path.join(l.stateDir, 'parent.qcow2'));
    assert.equal(disk['backing-filename-format'], 'qcow2');
    execFileSync('qemu-io', ['-c', 'write -P 0x42 0 64k', l.disk]); // the instance writes

    assert.deepEqual(await ensureMachineDisk(l), { created: false });
    await rm(cached); // the artifact cache evicts the parent
    execFileSync('qemu-io', ['-c', 'read -P 0x42 0 64k', '-c', 'read -P 0x11 1M 64k', l.disk]); // exits non-zero on a mismatch
    assert.equal(await eraseMachine(l), true);
    await assert.rejects(stat(l.stateDir));
    assert.equal(await eraseMachine(l), false);
  });
});

describe('forwarded host ports', () => {
  let holder: Server | undefined;
  after(() => holder?.close());

  it('are kept for the VM across starts while free, replaced when taken', async () => {
    const state = path.join(dir, 'ports');
    const want = [{ port: 22, tcp: true, udp: false }, { port: 53, tcp: true, udp: true }];
    const first = await allocatePorts(state, want, '127.0.0.1');
    assert.deepEqual(Object.keys(first).sort(), ['22', '53']);
    assert.notEqual(first['22']!.host, first['53']!.host);
    assert.deepEqual(first['53'], { host: first['53']!.host, tcp: true, udp: true });
    assert.deepEqual(JSON.parse(await readFile(path.join(state, 'ports.json'), 'utf8')), first);
    assert.deepEqual(await allocatePorts(state, want, '127.0.0.1'), first);

    const taken = createServer();
    holder = taken;
    await new Promise<void>((resolve) => taken.listen(first['22']!.host, '127.0.0.1', resolve));
    const third = await allocatePorts(state, want, '127.0.0.1');
    assert.notEqual(third['22']!.host, first['22']!.host);
    assert.equal(third['53']!.host, first['53']!.host);
  });
});

describe('qemu command line of an instance', () => {
  it('boots the disk first, attaches the cloud-init drive read-only, forwards the ports on loopback, no reboot-exit', () => {
    const args = machineArgs({
      accel: 'tcg', memoryMib: 512, vcpus: 2, disk: '/v/rootfs.qcow2', cloudInit: '/r/cidata.iso', qmpSocket: '/r/qmp.sock',
      volumes: [],
      net: { mode: 'user', internet: false, httpPort: 4000, bind: '127.0.0.1', forwards: { '22': { host: 4022, tcp: true, udp: false }, '53': { host: 4053, tcp: false, udp: true } } },
    });
    const line = args.join(' ');
    assert.match(line, /-drive file=\/v\/rootfs\.qcow2,if=none,id=rootfs,format=qcow2/);
    assert.match(line, /virtio-blk-pci,drive=rootfs,bootindex=0/);
    assert.match(line, /file=\/r\/cidata\.iso,if=none,id=cidata,format=raw,readonly=on/);
    assert.match(line, /user,id=n0,restrict=on,hostfwd=tcp:127\.0\.0\.1:4000-:80,hostfwd=tcp:127\.0\.0\.1:4022-:22,hostfwd=udp:127\.0\.0\.1:4053-:53/);
    assert.ok(!args.includes('-kernel') && !args.includes('-no-reboot'), 'boots its own kernel; a guest reboot stays a reboot');
  });
});

describe('instance volumes', () => {
  const volumes: MachineLaunch['volumes'] = [
    { mount: '/opt/data', kind: 'immutable', source: '/cache/ab/blob', sizeMib: 0, readOnly: true },
    { mount: '/mnt/scratch', kind: 'ephemeral', source: '', sizeMib: 64, readOnly: false },
    { mount: '/var/lib/keep', kind: 'persistent', source: '/v/hash/keep.img', sizeMib: 128, readOnly: false },
  ];

  it("are disks after the root disk and the cloud-init drive, in the message's order (the reference's), each with a serial", () => {
    const { drives, disks } = machineDrives(volumes, '/r/vm1');
    assert.deepEqual(drives, [
      { id: 'vol0', path: '/cache/ab/blob', readOnly: true, device: '/dev/vdc', mount: '/opt/data' },
      { id: 'vol1', path: '/r/vm1/vol1.img', readOnly: false, device: '/dev/vdd', mount: '/mnt/scratch' },
      { id: 'vol2', path: '/v/hash/keep.img', readOnly: false, device: '/dev/vde', mount: '/var/lib/keep' },
    ]);
    // The ephemeral one is made in the VM's run folder at every boot, the persistent one once.
    assert.deepEqual(disks, [{ path: '/r/vm1/vol1.img', sizeMib: 64, lifetime: 'boot' }, { path: '/v/hash/keep.img', sizeMib: 128, lifetime: 'persistent' }]);

    const line = machineArgs({ accel: 'tcg', memoryMib: 512, vcpus: 1, disk: '/v/rootfs.qcow2', cloudInit: '/r/cidata.iso', qmpSocket: '/r/qmp.sock', volumes: drives, net: { mode: 'tap', tap: 'aein2t0' } }).join(' ');
    const order = ['id=rootfs', 'id=cidata', 'id=vol0', 'id=vol1', 'id=vol2'].map((id) => line.indexOf(id));
    assert.ok(order.every((at, i) => at > 0 && (i === 0 || at > order[i - 1]!)), `drives in order: ${line}`);
    assert.match(line, /-drive file=\/cache\/ab\/blob,if=none,id=vol0,format=raw,readonly=on -device virtio-blk-pci,drive=vol0,serial=vol0/);
    assert.match(line, /-drive file=\/v\/hash\/keep\.img,if=none,id=vol2,format=raw,discard=unmap -device virtio-blk-pci,drive=vol2,serial=vol2/);
  });

  it('are mounted by cloud-init at their mount points (read-only for immutable ones), never blocking the boot', () => {
    const mounts = volumeMounts(machineDrives(volumes, '/r/vm1').drives);
    const userData = yaml(cloudInitFiles({ hostname: 'h', authorizedKeys: [KEY], internet: false, network: { ipv4: '10.0.2.15/24', gateway4: '10.0.2.2', nameservers: [] }, mounts })['user-data']) as Record<string, unknown>;
    assert.deepEqual(userData.mounts, [
      ['/dev/vdc', '/opt/data', 'auto', 'ro,nofail,x-systemd.device-timeout=0', '0', '0'],
      ['/dev/vdd', '/mnt/scratch', 'auto', 'defaults,nofail,x-systemd.device-timeout=0', '0', '0'],
      ['/dev/vde', '/var/lib/keep', 'auto', 'defaults,nofail,x-systemd.device-timeout=0', '0', '0'],
    ]);
    assert.equal((yaml(cloudInitFiles({ hostname: 'h', authorizedKeys: [], internet: false, network: { ipv4: '10.0.2.15/24', gateway4: '10.0.2.2', nameservers: [] } })['user-data']) as Record<string, unknown>).mounts, undefined, 'no volumes, no mounts');
  });
});
