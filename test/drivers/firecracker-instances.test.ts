// Instances (INSTANCE messages) under Firecracker, against the fake firecracker (no KVM
// here): the driver converts the parent to the raw disk Firecracker needs, grows it and
// its ext4 to size_mib, boots it as the root drive with the node's kernel and a
// cloud-init drive, on a tap from the pool with the owner's port forwards; the disk
// outlives stops until erased. The fake refuses a root drive a kernel could not mount.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setLogLevel } from '../../src/common/index.js';
import { DriverStartError, FirecrackerDriver, type Instance } from '../../src/drivers/index.js';
import { machineBootArgs, rawDiskOf } from '../../src/drivers/firecracker/index.js';
import { NetworkPool } from '../../src/drivers/net/index.js';
import type { MachineLaunch } from '../../src/programs/index.js';
import { until } from '../helpers/node.js';
import { fakeKernel, loggingFakeFirecracker } from './firecracker-helpers.js';
import { makeProgram, nextSlot } from './helpers.js';
import { netnsSkipReason } from './qemu-guest.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFbqLZ3u3cvYX8mD3eJkq1Jd7gk0c9Y2n4dGQ0e2sYvS test@aedr';
const tools = ['qemu-img', 'genisoimage', 'isoinfo', 'mkfs.ext4', 'resize2fs', 'debugfs', 'dumpe2fs'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const skip = netnsSkipReason() || (tools.length > 0 ? `missing ${tools.join(', ')} (.ci/setup.d/instances.sh)` : '');

describe('Firecracker instances (fake firecracker)', { skip: skip || false, timeout: 120_000 }, () => {
  let dir: string;
  let kernel: string;
  let parent: string;
  let apiLog: string;
  let binary: string;
  const taps = () => execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n').map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1]).filter((n) => n?.startsWith('aedi'));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-aedr-fcinst-'));
    await chmod(dir, 0o755);
    kernel = join(dir, 'vmlinux');
    await writeFile(kernel, fakeKernel('elf'));
    // The parent: an ext4 filesystem image (what Firecracker's root=/dev/vda mounts) with one file, as qcow2.
    const content = join(dir, 'content');
    await mkdir(content);
    await writeFile(join(content, 'hello.txt'), 'from the parent image\n');
    const ext4 = join(dir, 'parent.ext4');
    execFileSync('mkfs.ext4', ['-q', '-F', '-d', content, ext4, '16M']);
    parent = join(dir, 'parent.qcow2');
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', ext4, parent]);
    ({ binary, apiLog } = await loggingFakeFirecracker(dir));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function instanceDriver(): FirecrackerDriver {
    const pool = new NetworkPool({ pool: '10.213.79.0/28', prefix: 30, tapPrefix: 'aedi', stateDir: join(dir, 'net'), outboundInterface: '' });
    return new FirecrackerDriver({
      stopGraceMs: 3000, binary, jailer: '', kernel, initramfs: kernel, runDir: join(dir, 'run'), chrootBaseDir: join(dir, 'unused'),
      rootfs: '', cgroupRoot: '', uid: 0, gid: 0, apiTimeoutMs: 5000, extraBootArgs: '', pool,
    });
  }
  function instance(name: string, sizeMib: number) {
    const program = makeProgram([]);
    program.memoryMib = 256;
    program.vcpus = 2;
    const stateDir = join(dir, 'instances', name);
    const launch: MachineLaunch = {
      kind: 'machine', parent, parentFormat: 'qcow2', disk: join(stateDir, 'rootfs.qcow2'), sizeMib, stateDir,
      hostname: `host-${name}`, authorizedKeys: [KEY], ports: [{ port: 22, tcp: true, udp: false }], internet: false, volumes: [],
    };
    program.launch = launch;
    return { program, launch };
  }
  const calls = () => readFileSync(apiLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { method?: string; path?: string; body?: Record<string, unknown>; status?: number; cmdline?: string; guest?: string; root?: string; ext4?: boolean });

  it('boots the instance\'s raw disk as the root drive with a cloud-init drive, on a tap; keeps the disk across stops; erase removes it', async () => {
    const driver = instanceDriver();
    const { program, launch } = instance('one', 64);
    let vm: Instance | undefined = await driver.start(program, nextSlot());
    let cidata = '';
    try {
      assert.equal(vm.readyWhenStarted, true, 'an instance is ready once it runs');
      assert.equal(vm.endpoint.kind === 'tcp' && vm.endpoint.host, '10.213.79.2');
      assert.ok(vm.mappedPorts?.['22']?.tcp, 'port 22 forwarded');
      assert.deepEqual(taps(), ['aedi0']);
      const puts = calls().filter((c) => c.method === 'PUT');
      assert.deepEqual(puts.map((c) => `${c.path} ${c.status}`), ['/boot-source 204', '/drives/rootfs 204', '/drives/cidata 204', '/machine-config 204', '/network-interfaces/eth0 204', '/actions 204']);
      assert.deepEqual(puts[0]!.body, { kernel_image_path: kernel, boot_args: machineBootArgs('x86_64', '') }, 'no initrd: the image\'s own init runs');
      assert.deepEqual(puts[1]!.body, { drive_id: 'rootfs', path_on_host: rawDiskOf(launch), is_root_device: true, is_read_only: false });
      cidata = String(puts[2]!.body!.path_on_host);
      assert.equal(puts[2]!.body!.is_read_only, true);
      assert.deepEqual(puts[3]!.body, { vcpu_count: 2, mem_size_mib: 256, smt: false });
      assert.equal(puts[4]!.body!.host_dev_name, 'aedi0');
      // Firecracker appended the root drive; the fake's guest found an ext4 there.
      assert.match(calls().find((c) => c.cmdline)!.cmdline!, /^console=ttyS0 reboot=k panic=1 pci=off .* root=\/dev\/vda rw virtio_mmio/);
      assert.equal(calls().find((c) => c.guest)?.ext4, true);

      // The disk: raw (no qcow2 header), size_mib long, its ext4 grown to fill it, the parent's file in it.
      const disk = rawDiskOf(launch);
      assert.equal(statSync(disk).size, 64 * 1024 * 1024);
      assert.notEqual(readFileSync(disk).subarray(0, 4).toString('latin1'), 'QFI\xfb');
      const info = execFileSync('dumpe2fs', ['-h', disk], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const blocks = Number(/^Block count:\s+(\d+)/m.exec(info)![1]) * Number(/^Block size:\s+(\d+)/m.exec(info)![1]);
      assert.equal(blocks, 64 * 1024 * 1024);
      assert.equal(execFileSync('debugfs', ['-R', 'cat /hello.txt', disk], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), 'from the parent image\n');
      // cloud-init: hostname, the owner's key and the tap address, as for qemu.
      const userData = execFileSync('isoinfo', ['-i', cidata, '-R', '-x', '/user-data'], { encoding: 'utf8' });
      assert.ok(userData.includes(KEY));
      assert.match(execFileSync('isoinfo', ['-i', cidata, '-R', '-x', '/meta-data'], { encoding: 'utf8' }), /host-one/);
      assert.match(execFileSync('isoinfo', ['-i', cidata, '-R', '-x', '/network-config'], { encoding: 'utf8' }), /10\.213\.79\.2\/30/);

      // The owner writes to the disk; a stop keeps it.
      execFileSync('debugfs', ['-w', '-R', `write ${join(dir, 'bin', 'firecracker')} owner.txt`, disk], { stdio: 'ignore' });
      await vm.stop();
      const exit = await vm.exited;
      assert.equal(exit.requested, true);
      assert.equal(exit.code, 0, 'SendCtrlAltDel: the guest shut down and the VMM exited');
      vm = undefined;
      await until(() => taps().length === 0, 5_000, 'the tap to go');
      assert.ok(!existsSync(cidata), 'the per-boot cloud-init drive goes with the VM');

      const inode = statSync(disk).ino;
      vm = await driver.start(program, nextSlot());
      assert.equal(statSync(disk).ino, inode, 'the same disk, not a new one');
      assert.match(execFileSync('debugfs', ['-R', 'ls /', disk], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), /owner\.txt/);
    } finally {
      await vm?.stop();
    }
    assert.equal(await driver.erase(program), true);
    assert.ok(!existsSync(launch.stateDir), 'erase removes the disk and state');
    assert.deepEqual(await readdir(join(dir, 'run')), []);
  });

  it('refuses size_mib smaller than the parent, leaving no disk and no tap', async () => {
    const driver = instanceDriver();
    const { program, launch } = instance('small', 8);
    await assert.rejects(driver.start(program, nextSlot()), (err: Error) => err instanceof DriverStartError && /size_mib 8 is smaller than the parent image \(16 MiB\)/.test(err.message));
    assert.ok(!existsSync(launch.stateDir), 'no disk, no state folder');
    assert.deepEqual(taps(), []);
  });
});
