// guest/aleph_asgi against uvicorn (Debian's python3-uvicorn, h11), directly on
// loopback, both serving bench/upstream/asgi_bench.py:
//
//   node bench/asgi-vs-uvicorn.mjs      (ROUNDS=3, SMALL_S=5, BIG_MIB=200 by default)
//
// Workloads: small GETs over CONCURRENCY keep-alive connections, one BIG_MIB download
// and one BIG_MIB upload. For each: the rate seen by the client (requests/s, MiB/s) and
// the server's CPU time for it (µs per request, ms per MiB, from /proc/<pid>/stat),
// which a loaded machine disturbs much less than the rate. Each round runs every
// workload on both servers (order alternating); the medians and aleph_asgi/uvicorn
// ratios are printed and written to .bench-results/asgi-vs-uvicorn-<time>.json.
// Nothing asserts a figure.
import { createWriteStream, mkdirSync, readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startProcess, waitForPort } from './lib/proc.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PYTHON = process.env.PYTHON ?? '/usr/bin/python3';
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SMALL_S = Number(process.env.SMALL_S ?? 5);
const BIG_MIB = Number(process.env.BIG_MIB ?? 200);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16);
const APP_DIR = path.join(ROOT, 'bench/upstream');

const work = mkdtempSync(path.join(os.tmpdir(), 'aleph-edge-asgi-bench-'));
const servers = [];

async function start(name, args, env = {}) {
  const port = await freePort();
  const proc = startProcess(name, PYTHON, args(port), { env, log: createWriteStream(path.join(work, `${name}.log`)) });
  await waitForPort(port, proc);
  servers.push(proc);
  return { name, port, pid: proc.child.pid };
}

/** User + system CPU seconds of a process so far. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/** Runs `workload`, returns { rate, cpu }: cpu per unit (µs per request or ms per MiB). */
async function measure(server, workload) {
  const before = cpuSeconds(server.pid);
  const { rate, units, cpuScale } = await workload(server);
  return { rate, cpu: ((cpuSeconds(server.pid) - before) * cpuScale) / units };
}

function small(server) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const deadline = performance.now() + SMALL_S * 1000;
  let done = 0;
  const loop = () => new Promise((resolve, reject) => {
    const next = () => {
      if (performance.now() >= deadline) return resolve();
      http.get({ host: '127.0.0.1', port: server.port, path: '/', agent }, (res) => {
        res.resume();
        res.on('end', () => { done++; next(); });
      }).on('error', reject);
    };
    next();
  });
  const started = performance.now();
  return Promise.all(Array.from({ length: CONCURRENCY }, loop)).then(() => {
    agent.destroy();
    return { rate: done / ((performance.now() - started) / 1000), units: done, cpuScale: 1e6 };
  });
}

function download(server) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    http.get({ host: '127.0.0.1', port: server.port, path: `/download?mib=${BIG_MIB}`, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => (bytes += chunk.length));
      res.on('end', () => {
        if (bytes !== BIG_MIB << 20) reject(new Error(`${server.name}: ${bytes} bytes downloaded`));
        else resolve({ rate: BIG_MIB / ((performance.now() - started) / 1000), units: BIG_MIB, cpuScale: 1e3 });
      });
    }).on('error', reject);
  });
}

function upload(server) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.request({ host: '127.0.0.1', port: server.port, method: 'POST', path: '/upload', agent: false, headers: { 'content-length': BIG_MIB << 20 } }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => {
        if (Number(body) !== BIG_MIB << 20) reject(new Error(`${server.name}: the app counted ${body}`));
        else resolve({ rate: BIG_MIB / ((performance.now() - started) / 1000), units: BIG_MIB, cpuScale: 1e3 });
      });
    });
    req.on('error', reject);
    const piece = Buffer.alloc(1 << 20);
    let left = BIG_MIB;
    const write = () => {
      while (left > 0) {
        left--;
        if (!req.write(piece)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

try {
  const aleph = await start('aleph_asgi', (port) => ['-m', 'aleph_asgi', '--app', 'asgi_bench:app', '--app-dir', APP_DIR, '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warning'],
    { PYTHONPATH: path.join(ROOT, 'guest') });
  const uvicorn = await start('uvicorn', (port) => ['-m', 'uvicorn', '--host', '127.0.0.1', '--port', String(port), '--app-dir', APP_DIR, '--no-access-log', '--log-level', 'warning', 'asgi_bench:app']);
  const workloads = { 'small GET (req/s; CPU µs/req)': small, [`download ${BIG_MIB} MiB (MiB/s; CPU ms/MiB)`]: download, [`upload ${BIG_MIB} MiB (MiB/s; CPU ms/MiB)`]: upload };
  const runs = {};
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? [aleph, uvicorn] : [uvicorn, aleph];
    for (const [name, run] of Object.entries(workloads)) {
      for (const server of order) ((runs[name] ??= {})[server.name] ??= []).push(await measure(server, run));
    }
  }
  const result = { python: PYTHON, rounds: ROUNDS, concurrency: CONCURRENCY, bigMib: BIG_MIB, runs, medians: {} };
  console.log('| workload | rate aleph_asgi / uvicorn | ratio | CPU aleph_asgi / uvicorn | ratio |\n|---|---|---|---|---|');
  for (const [name, byServer] of Object.entries(runs)) {
    const pick = (server, key) => median(byServer[server].map((run) => run[key]));
    const [ra, ru, ca, cu] = [pick('aleph_asgi', 'rate'), pick('uvicorn', 'rate'), pick('aleph_asgi', 'cpu'), pick('uvicorn', 'cpu')];
    result.medians[name] = { rate: { aleph_asgi: ra, uvicorn: ru }, cpu: { aleph_asgi: ca, uvicorn: cu } };
    console.log(`| ${name} | ${ra.toFixed(0)} / ${ru.toFixed(0)} | ${(ra / ru).toFixed(2)} | ${ca.toFixed(1)} / ${cu.toFixed(1)} | ${(ca / cu).toFixed(2)} |`);
  }
  const outDir = path.join(ROOT, '.bench-results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, `asgi-vs-uvicorn-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify(result, null, 2));
} finally {
  for (const server of servers) await server.stop();
  rmSync(work, { recursive: true, force: true });
}
