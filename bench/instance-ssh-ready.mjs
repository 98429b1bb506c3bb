// An instance's time from start to SSH-ready under qemu TCG (or KVM when usable): the
// qemu driver starts the Debian 12 test image (guest/instance-image) with a fresh
// disk and the node's cloud-init drive, then `ssh -i key -p <forwarded port>` is
// tried until the owner's key logs in. Two boots: the first (cloud-init's first-boot
// work: host keys, the key, the hostname) and a second one on the same disk. Prints
// each phase and the load average (on a shared machine the load dominates TCG).
//   node bench/instance-ssh-ready.mjs   (after npm run build and .ci/setup.d/instances.sh)
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const D = path.join(ROOT, 'dist/src');
const { buildBaseInitramfs, ensureKernel, DEFAULT_VM_CACHE } = await import(`${D}/drivers/image/index.js`);
const { QemuDriver } = await import(`${D}/drivers/index.js`);
const { hostnameOf } = await import(`${D}/programs/aleph/index.js`);
const { setLogLevel } = await import(`${D}/common/index.js`);
const run = promisify(execFile);
setLogLevel('warn');

const image = execFileSync(path.join(ROOT, 'guest/instance-image/cached.sh'), ['--check', DEFAULT_VM_CACHE], { encoding: 'utf8' }).trim().split('\n').pop();
const dir = mkdtempSync(path.join(os.tmpdir(), 'aleph-edge-bench-instance-'));
try {
  const kernel = await ensureKernel();
  const initramfs = path.join(dir, 'initramfs');
  writeFileSync(initramfs, await buildBaseInitramfs({ modulesDir: kernel.modulesDir }));
  const key = path.join(dir, 'key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const driver = new QemuDriver({ stopGraceMs: 10_000, binary: 'qemu-system-x86_64', kernel: kernel.vmlinuz, initramfs, machine: 'auto', accel: 'auto', network: 'user', runDir: path.join(dir, 'vms') });
  const hash = '5e'.repeat(32);
  const stateDir = path.join(dir, 'volumes', hash);
  const program = {
    hash, name: 'bench', memoryMib: 1024, vcpus: 2, healthPath: '', requestTimeoutMs: 0, persistent: true,
    launch: {
      kind: 'machine', parent: image, parentFormat: 'qcow2', disk: path.join(stateDir, 'rootfs.qcow2'), sizeMib: 3072, stateDir,
      hostname: hostnameOf(hash), authorizedKeys: [readFileSync(`${key}.pub`, 'utf8').trim()], ports: [{ port: 22, tcp: true, udp: false }], internet: false, volumes: [],
    },
  };
  const ssh = (port) => run('ssh', ['-i', key, '-p', String(port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=20', 'root@127.0.0.1', 'hostname'], { timeout: 90_000 });
  for (const boot of ['first boot', 'second boot']) {
    const t0 = performance.now();
    const vm = await driver.start(program, { executionId: `bench-${boot.split(' ')[0]}` });
    const running = performance.now();
    const port = vm.mappedPorts['22'].host;
    for (;;) {
      try {
        const { stdout } = await ssh(port);
        if (stdout.trim() !== program.launch.hostname) throw new Error(`unexpected hostname ${stdout.trim()}`);
        break;
      } catch (error) {
        if (/unexpected hostname/.test(error.message)) throw error;
        if (performance.now() - t0 > 30 * 60_000) throw new Error('no ssh within 30 minutes');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    const ready = performance.now();
    const s0 = performance.now();
    await vm.stop();
    console.log(`${boot}: vm running ${((running - t0) / 1000).toFixed(1)} s, ssh ready ${((ready - t0) / 1000).toFixed(1)} s, acpi stop ${((performance.now() - s0) / 1000).toFixed(1)} s`);
  }
  console.log(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} cpus; accel ${await driver.resolveAccel()}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
