// Memory while streaming a large request body through aleph-edge:
//
//   node bench/body-stream.mjs          (after npm run build; BODY_MIB=200 by default)
//
// POSTs BODY_MIB MiB over HTTPS to the bench upstream's /upload (which only counts the
// bytes), sampling every 20 ms the RSS of aleph-edge's own processes (the CLI process
// and any workers; not the program). Reports baseline, peak growth and throughput.
// Writes .bench-results/body-stream-<time>.json. Nothing here asserts a figure.
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { makeCertificate } from './lib/cert.mjs';
import { CLI, HOST, ROOT, UPSTREAM_HASH, edgeConfig, get } from './lib/peers.mjs';
import { freePort, startProcess, statusRequest, until, waitForPort } from './lib/proc.mjs';

const MIB = 1 << 20;
const TOTAL = Number(process.env.BODY_MIB ?? 200);

if (!existsSync(CLI)) {
  console.error(`body-stream: ${CLI} is missing; build first (npm run build)`);
  process.exit(2);
}

/** The pid and its descendants, from /proc/<pid>/task/<tid>/children. */
function tree(pid) {
  const out = [pid];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      for (const child of text ? text.split(' ').map(Number) : []) out.push(...tree(child));
    }
  } catch {
    // gone meanwhile
  }
  return out;
}

function rss(pid) {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
  } catch {
    return 0;
  }
}

const work = mkdtempSync(path.join(os.tmpdir(), 'aleph-edge-body-'));
const cert = makeCertificate(work);
const ca = readFileSync(cert.ca);
const port = await freePort();
const socket = path.join(work, 'status.sock');
const configFile = path.join(work, 'aleph-edge.toml');
writeFileSync(configFile, edgeConfig({ dir: work, port, cert }));
const edge = startProcess('aleph-edge', process.execPath, [CLI, 'run', '--config', configFile], {
  env: { ALEPH_EDGE_LOG: process.env.BENCH_EDGE_LOG ?? 'warn' },
  log: createWriteStream(path.join(work, 'aleph-edge.log')),
});

let exitCode = 0;
try {
  await waitForPort(port, edge);
  await until(() => existsSync(socket), 15_000, 'the status socket');
  await get(port, '/', ca); // boots the program
  const vms = JSON.parse((await statusRequest(socket, 'GET', '/vms')).body);
  const programPids = new Set(vms.filter((v) => v.hash === UPSTREAM_HASH && v.pid).flatMap((v) => tree(v.pid)));
  const edgePids = () => tree(edge.child.pid).filter((pid) => !programPids.has(pid));
  const sample = () => edgePids().reduce((sum, pid) => sum + rss(pid), 0);

  const baseline = sample();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, sample())), 20);
  const chunk = Buffer.alloc(MIB, 7);
  const t0 = performance.now();
  const reply = await new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port, servername: HOST, ca, method: 'POST', path: '/upload', agent: false,
      headers: { host: HOST, 'content-length': String(TOTAL * MIB) },
    }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < TOTAL) {
        sent++;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  peak = Math.max(peak, sample());
  const received = JSON.parse(reply.body).body_bytes;
  const result = {
    body_mib: TOTAL, status: reply.status, received_bytes: received, complete: received === TOTAL * MIB,
    edge_processes: edgePids().length, seconds, mib_per_s: TOTAL / seconds,
    rss_baseline_mib: baseline / MIB, rss_peak_mib: peak / MIB, rss_growth_mib: (peak - baseline) / MIB,
  };
  const outDir = path.join(ROOT, '.bench-results');
  mkdirSync(outDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(path.join(outDir, `body-stream-${stamp}.json`), JSON.stringify(result, null, 2));
  console.log(`body-stream: ${TOTAL} MiB upload (${result.complete ? 'complete' : `INCOMPLETE: ${received} bytes`}) in ${seconds.toFixed(2)} s (${result.mib_per_s.toFixed(0)} MiB/s); ` +
    `aleph-edge RSS (${result.edge_processes} process(es)) baseline ${result.rss_baseline_mib.toFixed(1)} MiB, peak ${result.rss_peak_mib.toFixed(1)} MiB, growth ${result.rss_growth_mib.toFixed(1)} MiB`);
} catch (error) {
  console.error(`body-stream: ${error.stack ?? error.message}\n${edge.tail()}`);
  exitCode = 1;
} finally {
  await edge.stop('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
process.exit(exitCode);
