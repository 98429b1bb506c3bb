// VM cold starts, driver start() to the first HTTP response, qemu under TCG (or KVM
// when usable), three ways for three programs (issue 23):
//   boot     a fresh VM boots the kernel, the init mounts the drives, the program starts;
//   restore  the VM's state saved once the program was ready is loaded (docs/snapshots.md);
//   pool     the program is attached to a VM booted beforehand with no program
//            (docs/warm-pool.md; that VM's own boot is not counted, it happened before).
// Programs: binary (busybox httpd from the initramfs, no runtime), asgi (a plain ASGI
// app on the built Debian runtime) and fastapi (the FastAPI test app on the runtime,
// with an immutable and a data volume: read-only ones, so that it may be restored).
// Prints each figure, then median and p90 per program and way, the snapshot's size
// and save time, and the CPU an idle warm VM costs. VM_BENCH_ROUNDS rounds (default 5);
// VM_BENCH_ONLY=binary,asgi,fastapi picks programs; VM_BENCH_PRELOAD (below).
//   node bench/vm-cold-start.mjs      (after npm run build and .ci/setup.d/runtime.sh)
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const D = path.join(ROOT, 'dist/src');
const { buildBaseInitramfs, buildGuestAgent, ensureKernel, ensureRuntime } = await import(`${D}/drivers/image/index.js`);
const { SnapshotStore } = await import(`${D}/drivers/vm/index.js`);
const { createLogger, setLogLevel } = await import(`${D}/common/index.js`);
const { QemuDriver, waitForHttp } = await import(`${D}/drivers/index.js`);
const rounds = Number(process.env.VM_BENCH_ROUNDS ?? 5);
// What a warm VM's Python imports before a program comes ([drivers.qemu] prewarm_preload;
// VM_BENCH_PRELOAD="" for none, as before that setting existed).
const PRELOAD = (process.env.VM_BENCH_PRELOAD ?? 'fastapi').split(',').filter(Boolean);
const ONLY = (process.env.VM_BENCH_ONLY ?? '').split(',').filter(Boolean);
if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');

const squashfs = (src, out) => execFileSync('mksquashfs', [src, out, '-quiet', '-noappend', '-all-root']);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p90 = (xs) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.9) - 1)];
const get = (ep, p) => new Promise((resolve, reject) => http.get({ host: ep.host, port: ep.port, path: p }, (r) => { r.resume(); r.on('end', () => resolve(r.statusCode)); }).on('error', reject));
/** CPU seconds a process used so far (utime + stime), from /proc. */
const cpuSeconds = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
};

const dir = mkdtempSync(path.join(os.tmpdir(), 'aleph-edge-bench-vm-'));
try {
  const kernel = await ensureKernel();
  const runtime = await ensureRuntime(undefined, undefined, undefined, true);
  const initramfs = path.join(dir, 'initramfs');
  const agent = await buildGuestAgent(path.join(dir, 'aleph-agent'));
  writeFileSync(initramfs, await buildBaseInitramfs({ modulesDir: kernel.modulesDir, agent }));

  const site = path.join(dir, 'site');
  mkdirSync(path.join(site, 'www'), { recursive: true });
  writeFileSync(path.join(site, 'start'), '#!/bin/sh\nexec httpd -f -p 8080 -h /app/www\n');
  chmodSync(path.join(site, 'start'), 0o755);
  writeFileSync(path.join(site, 'www', 'index.html'), 'hello\n');
  const plain = path.join(dir, 'plain');
  mkdirSync(plain);
  writeFileSync(path.join(plain, 'main.py'), [
    'async def app(scope, receive, send):',
    '    if scope["type"] != "http":',
    '        return',
    '    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})',
    '    await send({"type": "http.response.body", "body": b"hello"})',
    '',
  ].join('\n'));
  squashfs(plain, path.join(dir, 'plain.squashfs'));
  squashfs(path.join(ROOT, 'test/fixtures/asgi-app'), path.join(dir, 'fastapi.squashfs'));
  for (const [name, file, text] of [['venv', 'hello', 'immutable\n'], ['data', 'data.txt', 'data\n']]) {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, file), text);
    squashfs(path.join(dir, name), path.join(dir, `${name}.squashfs`));
  }

  const base = { name: 'bench', vcpus: 1, healthPath: '', requestTimeoutMs: 0 };
  const vm = { kind: 'vm', entrypoint: '', env: {}, kernel: '', initramfs: '', internet: false };
  const programs = {
    binary: { ...base, hash: '01'.repeat(32), memoryMib: 128, launch: { ...vm, code: site, entrypoint: '/app/start' } },
    asgi: {
      ...base, hash: '02'.repeat(32), memoryMib: 256,
      launch: { ...vm, code: path.join(dir, 'plain.squashfs'), aleph: { interface: 'asgi', asgiApp: 'main:app', runtime, volumes: [] } },
    },
    fastapi: {
      ...base, hash: '03'.repeat(32), memoryMib: 256,
      launch: {
        ...vm, code: path.join(dir, 'fastapi.squashfs'),
        aleph: { interface: 'asgi', asgiApp: 'main:app', runtime, volumes: [
          { mount: '/data', kind: 'data', source: path.join(dir, 'data.squashfs'), sizeMib: 0, readOnly: true },
          { mount: '/opt/venv', kind: 'immutable', source: path.join(dir, 'venv.squashfs'), sizeMib: 0, readOnly: true },
        ] },
      },
    },
  };

  const common = { stopGraceMs: 12_000, binary: 'qemu-system-x86_64', kernel: kernel.vmlinuz, initramfs, machine: 'auto', accel: 'auto', network: 'user', runDir: path.join(dir, 'vms') };
  const store = new SnapshotStore(path.join(dir, 'snapshots'), 8 * 1024 ** 3, createLogger('bench.snapshots'));
  const bootDriver = new QemuDriver(common);
  const snapDriver = new QemuDriver({ ...common, snapshots: store });
  let executions = 0;
  const timeToAnswer = async (driver, program, slot = {}) => {
    const t0 = performance.now();
    const instance = await driver.start(program, { executionId: `bench-${++executions}`, ...slot });
    // start() returns once the VM runs (a restore: loaded, and the guest agent answered).
    const startedMs = Math.round(performance.now() - t0);
    await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 600_000 });
    await get(instance.endpoint, '/');
    return { instance, ms: Math.round(performance.now() - t0), startedMs };
  };
  const line = (kind, way, xs, extra = '') =>
    console.log(`${kind.padEnd(8)} ${way.padEnd(8)} median ${String(median(xs)).padStart(6)} ms  p90 ${String(p90(xs)).padStart(6)} ms  (${xs.join(', ')})${extra}`);
  const summary = [];

  for (const [kind, program] of Object.entries(programs)) {
    if (ONLY.length > 0 && !ONLY.includes(kind)) continue;
    // boot
    const boots = [];
    for (let round = 0; round < rounds; round++) {
      const { instance, ms } = await timeToAnswer(bootDriver, program);
      boots.push(ms);
      console.log(`${kind} boot ${round + 1}: ${ms} ms (load ${os.loadavg()[0].toFixed(1)})`);
      await instance.stop();
    }
    // restore: one boot saves the state, then every round restores it
    const saved = await timeToAnswer(snapDriver, program);
    const before = (await store.list()).length;
    const t0 = performance.now();
    saved.instance.ready();
    while ((await store.list()).length === before) await new Promise((r) => setTimeout(r, 100));
    const saveMs = Math.round(performance.now() - t0);
    const bytes = (await store.list()).find((e) => e.usedAt >= 0 && e.bytes > 0)?.bytes ?? 0;
    await saved.instance.stop();
    const restores = [];
    for (let round = 0; round < rounds; round++) {
      const { instance, ms, startedMs } = await timeToAnswer(snapDriver, program);
      if (!instance.restored) throw new Error(`${kind}: round ${round + 1} booted instead of restoring`);
      restores.push(ms);
      console.log(`${kind} restore ${round + 1}: ${ms} ms, start() returned at ${startedMs} ms (load ${os.loadavg()[0].toFixed(1)})`);
      await instance.stop();
    }
    for (const e of await store.list()) await store.remove(e.key);
    // pool: a VM of the program's shape booted beforehand (not counted), then attached
    const poolDriver = new QemuDriver({ ...common, prewarm: { runtime: program.launch.aleph?.runtime ?? '', memoryMib: program.memoryMib, vcpus: program.vcpus, preload: PRELOAD } });
    const attaches = [];
    let idleCpu = '';
    for (let round = 0; round < rounds; round++) {
      const warm = await poolDriver.prewarm.boot(new AbortController().signal);
      if (round === 0) {
        // What a warm VM costs while it waits: CPU over 10 s.
        const c0 = cpuSeconds(warm.vm.pid);
        await new Promise((r) => setTimeout(r, 10_000));
        idleCpu = `; an idle warm VM uses ${(((cpuSeconds(warm.vm.pid) - c0) / 10) * 100).toFixed(1)}% of a core`;
      }
      const { instance, ms, startedMs } = await timeToAnswer(poolDriver, program, { warm });
      if (!instance.fromPool) throw new Error(`${kind}: round ${round + 1} did not use the warm VM`);
      attaches.push(ms);
      console.log(`${kind} pool ${round + 1}: ${ms} ms, start() returned at ${startedMs} ms (load ${os.loadavg()[0].toFixed(1)})`);
      await instance.stop();
    }
    summary.push(() => {
      line(kind, 'boot', boots);
      line(kind, 'restore', restores, `; restore/boot ${(median(restores) / median(boots)).toFixed(2)}; state ${(bytes / 1024 ** 2).toFixed(0)} MiB saved in ${saveMs} ms`);
      line(kind, 'pool', attaches, `; pool/boot ${(median(attaches) / median(boots)).toFixed(2)}${idleCpu}`);
    });
  }
  console.log(`\n${rounds} round(s); load now ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}, ${os.cpus().length} cores`);
  for (const print of summary) print();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
