// VM cold start, driver start() to the first HTTP response, qemu under TCG (or KVM
// when usable): a binary program (busybox httpd from the initramfs) and an ASGI
// program (FastAPI on the built Debian runtime, code and volumes on drives),
// alternately, VM_BENCH_ROUNDS rounds (default 3). Prints each figure, the medians
// and the load average (on a shared machine the load dominates TCG figures).
// Then boot against snapshot restore (docs/snapshots.md) for the binary program and
// the FastAPI program without writable volumes (those always boot): one boot saves
// the state, then VM_BENCH_ROUNDS restores; the ratio restore/boot is the figure.
//   node bench/vm-cold-start.mjs      (after npm run build and .ci/setup.d/runtime.sh)
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const D = path.join(ROOT, 'dist/src');
const { buildBaseInitramfs, buildGuestAgent, ensureKernel, ensureRuntime } = await import(`${D}/drivers/image/index.js`);
const { SnapshotStore } = await import(`${D}/drivers/vm/index.js`);
const { createLogger } = await import(`${D}/common/index.js`);
const { QemuDriver, waitForHttp } = await import(`${D}/drivers/index.js`);
const rounds = Number(process.env.VM_BENCH_ROUNDS ?? 3);

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
  const code = path.join(dir, 'code.squashfs');
  execFileSync('mksquashfs', [path.join(ROOT, 'test/fixtures/asgi-app'), code, '-quiet', '-noappend', '-all-root']);
  const venvDir = path.join(dir, 'venv');
  mkdirSync(venvDir);
  writeFileSync(path.join(venvDir, 'hello'), 'immutable\n');
  const dataDir = path.join(dir, 'data');
  mkdirSync(dataDir);
  writeFileSync(path.join(dataDir, 'data.txt'), 'data\n');
  for (const d of ['venv', 'data']) execFileSync('mksquashfs', [path.join(dir, d), path.join(dir, `${d}.squashfs`), '-quiet', '-noappend', '-all-root']);

  const driver = new QemuDriver({ stopGraceMs: 12_000, binary: 'qemu-system-x86_64', kernel: kernel.vmlinuz, initramfs, machine: 'auto', accel: 'auto', network: 'user', runDir: path.join(dir, 'vms') });
  const base = { name: 'bench', vcpus: 1, healthPath: '', requestTimeoutMs: 0 };
  const programs = {
    binary: { ...base, hash: '01'.repeat(32), memoryMib: 128, launch: { kind: 'vm', code: site, entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false } },
    asgi: {
      ...base, hash: '02'.repeat(32), memoryMib: 256,
      launch: {
        kind: 'vm', code, entrypoint: '', env: {}, kernel: '', initramfs: '', internet: false,
        aleph: { interface: 'asgi', asgiApp: 'main:app', runtime, volumes: [
          { mount: '/data', kind: 'data', source: path.join(dir, 'data.squashfs'), sizeMib: 0, readOnly: true },
          { mount: '/opt/venv', kind: 'immutable', source: path.join(dir, 'venv.squashfs'), sizeMib: 0, readOnly: true },
          { mount: '/var/lib/example', kind: 'persistent', source: path.join(dir, 'volumes', 'data.img'), sizeMib: 4, readOnly: false },
          { mount: '/scratch', kind: 'ephemeral', source: '', sizeMib: 2, readOnly: false },
        ] },
      },
    },
  };
  const get = (ep, p) => new Promise((resolve, reject) => http.get({ host: ep.host, port: ep.port, path: p }, (r) => { r.resume(); r.on('end', () => resolve(r.statusCode)); }).on('error', reject));
  const results = { binary: [], asgi: [] };
  for (let round = 0; round < rounds; round++) {
    for (const [kind, program] of Object.entries(programs)) {
      const load = os.loadavg()[0].toFixed(1);
      const t0 = performance.now();
      const instance = await driver.start(program, { executionId: `bench-${kind}-${round}` });
      try {
        await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 300_000 });
        const status = await get(instance.endpoint, '/');
        const ms = Math.round(performance.now() - t0);
        results[kind].push(ms);
        console.log(`${kind} round ${round + 1}: ${ms} ms to the first response (status ${status}, load ${load})`);
      } finally {
        await instance.stop();
      }
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const p90 = (xs) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))];
  console.log(`median cold start: binary ${median(results.binary)} ms, asgi ${median(results.asgi)} ms (load now ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}, ${os.cpus().length} cores)`);

  // Boot against restore.
  const store = new SnapshotStore(path.join(dir, 'snapshots'), 8 * 1024 ** 3, createLogger('bench.snapshots'));
  const snapDriver = new QemuDriver({ stopGraceMs: 12_000, binary: 'qemu-system-x86_64', kernel: kernel.vmlinuz, initramfs, machine: 'auto', accel: 'auto', network: 'user', runDir: path.join(dir, 'vms'), snapshots: store });
  const readOnly = {
    binary: { ...programs.binary, hash: '03'.repeat(32) },
    fastapi: { ...programs.asgi, hash: '04'.repeat(32), launch: { ...programs.asgi.launch, aleph: { ...programs.asgi.launch.aleph, volumes: programs.asgi.launch.aleph.volumes.filter((v) => v.readOnly) } } },
  };
  const timeToAnswer = async (program, id) => {
    const t0 = performance.now();
    const instance = await snapDriver.start(program, { executionId: id });
    await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 300_000 });
    await get(instance.endpoint, '/');
    return { instance, ms: Math.round(performance.now() - t0) };
  };
  for (const [kind, program] of Object.entries(readOnly)) {
    const booted = await timeToAnswer(program, `bench-boot-${kind}`);
    const before = (await store.list()).length;
    const t0 = performance.now();
    booted.instance.ready();
    while ((await store.list()).length === before) await new Promise((r) => setTimeout(r, 100));
    const saveMs = Math.round(performance.now() - t0);
    const bytes = (await store.list()).reduce((sum, e) => sum + e.bytes, 0);
    await booted.instance.stop();
    const restores = [];
    for (let round = 0; round < rounds; round++) {
      const restored = await timeToAnswer(program, `bench-restore-${kind}-${round}`);
      if (!restored.instance.restored) throw new Error(`${kind}: round ${round + 1} booted instead of restoring`);
      restores.push(restored.ms);
      await restored.instance.stop();
    }
    console.log(`${kind}: boot ${booted.ms} ms; restore median ${median(restores)} ms, p90 ${p90(restores)} ms (${restores.join(', ')}); restore/boot ${(median(restores) / booted.ms).toFixed(2)}x; state ${(bytes / 1024 ** 2).toFixed(0)} MiB saved in ${saveMs} ms (load ${os.loadavg()[0].toFixed(1)})`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
