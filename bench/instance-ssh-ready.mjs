// An instance's time from start to SSH-ready under qemu TCG (or KVM when usable): the
// qemu driver (instances only: no program kernel) starts the Debian 12 test image
// (guest/instance-image) with a fresh disk and the node's cloud-init drive, then
// `ssh -i key -p <forwarded port> root@127.0.0.1 hostname` is tried until the owner's
// key logs in and the VM answers with the hostname cloud-init gave it. Each run is two
// boots: the first on a fresh disk (cloud-init's first-boot work: host keys, the key,
// the hostname) and a second one on the same disk. Prints every boot and the median
// of each kind over the runs, with the load average (on a shared machine the load
// dominates TCG).
//   INSTANCE_BENCH_RUNS=5 node bench/instance-ssh-ready.mjs   (default 3 runs;
//   after npm run build and .ci/setup.d/instances.sh)
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const D = path.join(ROOT, 'dist/src');
const { DEFAULT_VM_CACHE } = await import(`${D}/drivers/image/index.js`);
const { QemuDriver } = await import(`${D}/drivers/index.js`);
const { hostnameOf } = await import(`${D}/programs/aleph/index.js`);
const { setLogLevel } = await import(`${D}/common/index.js`);
const run = promisify(execFile);
setLogLevel('warn');

const RUNS = Number(process.env.INSTANCE_BENCH_RUNS ?? 3);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`INSTANCE_BENCH_RUNS must be a positive integer, got ${process.env.INSTANCE_BENCH_RUNS}`);
/** Only a hung boot hits this; a loaded machine can take many minutes under TCG. */
const SSH_WAIT_MS = 45 * 60_000;

const image = execFileSync(path.join(ROOT, 'guest/instance-image/cached.sh'), ['--check', process.env.ALEPH_EDGE_VM_CACHE || DEFAULT_VM_CACHE], { encoding: 'utf8' }).trim().split('\n').pop();
const dir = mkdtempSync(path.join(os.tmpdir(), 'aleph-edge-bench-instance-'));
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

try {
  const key = path.join(dir, 'key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const driver = new QemuDriver({ stopGraceMs: 10_000, binary: 'qemu-system-x86_64', kernel: '', initramfs: '', machine: 'auto', accel: 'auto', network: 'user', runDir: path.join(dir, 'vms') });
  const ssh = (port) => run('ssh', ['-i', key, '-p', String(port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=20', 'root@127.0.0.1', 'hostname'], { timeout: 90_000 });
  const results = { first: [], second: [], stop: [] };
  for (let r = 1; r <= RUNS; r++) {
    // A new hash per run: a fresh disk (and host ports) for its first boot.
    const hash = `${r.toString(16).padStart(2, '0')}${'5e'.repeat(31)}`;
    const stateDir = path.join(dir, 'volumes', hash);
    const program = {
      hash, name: 'bench', memoryMib: 1024, vcpus: 2, healthPath: '', requestTimeoutMs: 0, persistent: true,
      launch: {
        kind: 'machine', parent: image, parentFormat: 'qcow2', disk: path.join(stateDir, 'rootfs.qcow2'), sizeMib: 3072, stateDir,
        hostname: hostnameOf(hash), authorizedKeys: [readFileSync(`${key}.pub`, 'utf8').trim()], ports: [{ port: 22, tcp: true, udp: false }], internet: false, volumes: [],
      },
    };
    for (const boot of ['first', 'second']) {
      const t0 = performance.now();
      const vm = await driver.start(program, { executionId: `bench-${r}-${boot}` });
      const running = performance.now();
      const port = vm.mappedPorts['22'].host;
      for (;;) {
        try {
          const { stdout } = await ssh(port);
          if (stdout.trim() !== program.launch.hostname) throw new Error(`unexpected hostname ${stdout.trim()}`);
          break;
        } catch (error) {
          if (/unexpected hostname/.test(error.message)) throw error;
          if (performance.now() - t0 > SSH_WAIT_MS) throw new Error(`no ssh within ${SSH_WAIT_MS / 60_000} minutes`);
          await new Promise((resolve) => setTimeout(resolve, 1000)); // poll interval between ssh attempts
        }
      }
      const ready = performance.now() - t0;
      const s0 = performance.now();
      await vm.stop();
      const stop = performance.now() - s0;
      results[boot].push(ready);
      results.stop.push(stop);
      console.log(`run ${r}, ${boot} boot: vm running ${seconds(running - t0)}, ssh ready ${seconds(ready)}, acpi stop ${seconds(stop)}; load ${os.loadavg()[0].toFixed(1)}`);
    }
  }
  console.log(`median of ${RUNS} run(s): ssh ready ${seconds(median(results.first))} (fresh disk), ${seconds(median(results.second))} (second boot); acpi stop ${seconds(median(results.stop))}`);
  console.log(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} cpus; accel ${await driver.resolveAccel()}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
