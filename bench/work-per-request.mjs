// Work per request, counted rather than timed: what aleph-edge's workers make Node do
// for each proxied keep-alive request (promises, timers, ticks, listeners, socket
// writes) next to node-floor and any BENCH_EDGE_VARIANTS, plus CPU time per request.
// The counts do not depend on how busy the machine is, so an A/B reads the same on a
// shared, loaded machine as on a quiet one (CPU time does not: see docs/benchmarks.md).
//
//   npm run build && node bench/work-per-request.mjs
//   BENCH_EDGE_VARIANTS='{"old":{"cli":"/tmp/old/dist/src/cli.js"}}' node bench/work-per-request.mjs
//
// Knobs: BENCH_ROUNDS (3), BENCH_DURATION (s, 5), BENCH_CONNECTIONS (4: few, so that
// per-connection work such as TLS handshakes is spread over many requests), BENCH_PATH (/).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeCertificate } from './lib/cert.mjs';
import { wrk } from './lib/load.mjs';
import { childPids as children, edgeVariants, startEdge, startNodeFloor } from './lib/peers.mjs';
import { sleep } from './lib/proc.mjs';
import { median } from './lib/stats.mjs';

const HOOK = fileURLToPath(new URL('./work/count-hook.mjs', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 4);
const URL_PATH = process.env.BENCH_PATH ?? '/';

const work = mkdtempSync(path.join(os.tmpdir(), 'aleph-edge-work-'));
const countDir = path.join(work, 'counts');
mkdirSync(countDir);
process.env.BENCH_COUNT_DIR = countDir;
const hookArgs = ['--import', HOOK];

/** The processes that serve requests: aleph-edge's workers, node-floor's cluster workers. */
function servingPids(peer) {
  const root = peer.proc.child.pid;
  const pids = children(root).filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return peer.name === 'node-floor' || argv.includes('worker');
    } catch {
      return false;
    }
  });
  return pids.length > 0 ? pids : [root];
}

/** Sums the counters of the serving processes (each writes its snapshot on SIGUSR2). */
async function snapshot(peer) {
  const pids = servingPids(peer);
  for (const pid of pids) rmSync(path.join(countDir, `${pid}.json`), { force: true });
  for (const pid of pids) process.kill(pid, 'SIGUSR2');
  const total = { counts: {}, listeners: 0, requests: 0, cpu_us: 0 };
  for (const pid of pids) {
    const file = path.join(countDir, `${pid}.json`);
    for (let i = 0; !existsSync(file); i++) {
      if (i > 6000) throw new Error(`${peer.name}: no snapshot from pid ${pid}`);
      await sleep(10);
    }
    await sleep(20); // written in one call; give it a moment to be complete
    const one = JSON.parse(readFileSync(file, 'utf8'));
    for (const [type, n] of Object.entries(one.counts)) total.counts[type] = (total.counts[type] ?? 0) + n;
    total.listeners += one.listeners;
    total.requests += one.requests;
    total.cpu_us += one.cpu_us;
  }
  return total;
}

function perRequest(before, after) {
  const requests = after.requests - before.requests;
  const out = { requests, cpu_us: (after.cpu_us - before.cpu_us) / requests, listeners: (after.listeners - before.listeners) / requests };
  for (const [type, n] of Object.entries(after.counts)) out[type] = (n - (before.counts[type] ?? 0)) / requests;
  return out;
}

const CERT = makeCertificate(work);
const CA_PEM = readFileSync(CERT.ca);
const peers = [];
try {
  const edge = await startEdge({ dir: path.join(work, 'aleph-edge'), cert: CERT, caPem: CA_PEM, logLevel: 'warn', nodeArgs: hookArgs });
  peers.push(edge);
  const workers = Math.max(1, children(edge.proc.child.pid).length - 1);
  process.env.BENCH_FLOOR_NODE_ARGS = hookArgs.join(' ');
  peers.push(await startNodeFloor({ dir: path.join(work, 'node-floor'), cert: CERT, upstreamPort: edge.upstreamPort, workers }));
  for (const [i, v] of edgeVariants().entries()) {
    peers.push(await startEdge({ ...v, nodeArgs: [...hookArgs, ...v.nodeArgs], dir: path.join(work, `v${i}`), cert: CERT, caPem: CA_PEM, logLevel: 'warn' }));
  }
  const results = new Map(peers.map((p) => [p.name, []]));
  for (const peer of peers) await wrk(peer, { path: URL_PATH, threads: 1, connections: CONNECTIONS, durationS: 1 }); // warm-up
  for (let round = 1; round <= ROUNDS; round++) {
    for (const peer of peers) {
      const before = await snapshot(peer);
      await wrk(peer, { path: URL_PATH, threads: 1, connections: CONNECTIONS, durationS: DURATION });
      const r = perRequest(before, await snapshot(peer));
      results.get(peer.name).push(r);
      console.log(`round ${round} ${peer.name.padEnd(22)} requests=${r.requests} cpu_us=${r.cpu_us.toFixed(0)} promises=${(r.PROMISE ?? 0).toFixed(2)} timers=${(r.Timeout ?? 0).toFixed(2)} ticks=${(r.TickObject ?? 0).toFixed(2)} listeners=${r.listeners.toFixed(2)}`);
    }
  }
  const names = [...results.keys()];
  const keys = [...new Set(names.flatMap((n) => results.get(n).flatMap((r) => Object.keys(r))))].filter((k) => k !== 'requests');
  const rows = keys
    .map((k) => [k, names.map((n) => median(results.get(n).map((r) => r[k] ?? 0)))])
    .filter(([k, values]) => k === 'cpu_us' || Math.max(...values) >= 0.01);
  console.log(`\nper request, medians of ${ROUNDS} rounds of ${DURATION} s, wrk -t1 -c${CONNECTIONS} ${URL_PATH} (serving processes only)\n`);
  console.log(`| per request | ${names.join(' | ')} |\n|---|${names.map(() => '---:').join('|')}|`);
  for (const [k, values] of rows) console.log(`| ${k === 'cpu_us' ? 'CPU µs' : k} | ${values.map((v) => (k === 'cpu_us' ? v.toFixed(0) : v.toFixed(2))).join(' | ')} |`);
} catch (error) {
  console.error(`work-per-request: ${error.stack ?? error.message}`);
  process.exitCode = 1;
} finally {
  for (const peer of [...peers].reverse()) await peer.stop().catch(() => {});
  rmSync(work, { recursive: true, force: true });
}
