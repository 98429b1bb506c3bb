// `npm run bench`: aleph-edge next to Caddy, nginx and a direct connection, on
// loopback, same certificate (ECDSA P-256), same upstream process, same workloads,
// run alternately (every peer once per round, BENCH_ROUNDS rounds, the order shuffled
// each round). Prints medians and
// the ratio aleph-edge / Caddy per metric, and writes JSON + Markdown under
// .bench-results/. Installs nothing: needs caddy, nginx and wrk on PATH and a build
// in dist/ (the npm script builds first).
//
// The h2 workload needs h2load (Debian: nghttp2-client).
//
// Environment:
//   BENCH_QUICK=1        smoke run: 2 rounds of 1 s
//   BENCH_ROUNDS=5       rounds per workload (default 5; 2 when quick)
//   BENCH_DURATION=5     seconds per run (default 5; 1 when quick)
//   BENCH_RATE=2000      requests/s for the paced latency workload
//   BENCH_PEERS=...      comma list among aleph-edge,caddy,nginx,direct,node-floor (node-floor:
//                        bench/upstream/node-floor.mjs, the least a Node proxy does; not in the default set)
//   BENCH_WORKLOADS=...  comma list of workload ids (see WORKLOADS below)
//   BENCH_EDGE_LOG=warn  aleph-edge's log level (warn: no per-request log line, like the peers' defaults)
//   BENCH_EDGE_WORKERS=N sets server.workers in aleph-edge's config (default: the build's default)
//   BENCH_EDGE_NODE_ARGS  node flags for aleph-edge (BENCH_FLOOR_NODE_ARGS: for node-floor); BENCH_EDGE_VARIANTS adds aleph-edge peers
//                        for an A/B in one run (see edgeVariants in lib/peers.mjs)
//   BENCH_KEEP=1         keep the work folder (configs, logs) and print where
//   BENCH_QUIET_BUSY=0.15, BENCH_QUIET_WAIT=10: before each run, wait up to 10 s for the
//                        machine to be less than 15% busy (other work skews the next run)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { makeCertificate } from './lib/cert.mjs';
import { h2load, nodeClient, wrk } from './lib/load.mjs';
import { CLI, ROOT, cpuSeconds, directPeer, edgeProcesses, edgeVariants, get, startCaddy, startEdge, startNginx, startNodeFloor } from './lib/peers.mjs';
import { sleep } from './lib/proc.mjs';
import { median } from './lib/stats.mjs';

const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 2 : 5));
const DURATION = Number(process.env.BENCH_DURATION ?? (QUICK ? 1 : 5));
const WARMUP = Math.min(2, DURATION);
const RATE = Number(process.env.BENCH_RATE ?? 2000);
const PACED_CONNECTIONS = 20;
const PEER_NAMES = (process.env.BENCH_PEERS ?? 'aleph-edge,caddy,nginx,direct').split(',');
const QUIET_BUSY = Number(process.env.BENCH_QUIET_BUSY ?? 0.15);
const QUIET_WAIT_MS = Number(process.env.BENCH_QUIET_WAIT ?? 10) * 1000;
const ms = (us) => us / 1000;
const MiB = 1 << 20;

/**
 * The workloads. Each run yields named metrics; `better` says which way is good.
 * `tlsOnly`: meaningless against the plain-HTTP upstream, so the direct peer skips it.
 */
const WORKLOADS = [
  {
    id: 'keepalive',
    cpu: { label: 'CPU ms per 1k requests', per: (r) => r.raw.requests / 1000 },
    title: 'keep-alive HTTPS GET, 64 B response, saturation (wrk -t2 -c64)',
    metrics: [
      { key: 'rps', label: 'requests/s', better: 'higher' },
      { key: 'p99_ms', label: 'p99 latency at saturation, ms', better: 'lower' },
    ],
    run: async (peer, durationS) => {
      const r = await wrk(peer, { threads: 2, connections: 64, durationS });
      return { rps: r.requests / (r.duration_us / 1e6), p99_ms: ms(r.latency_us.p99), errors: errorCount(r), raw: r };
    },
  },
  {
    id: 'paced',
    cpu: { label: 'CPU ms per 1k requests', per: (r) => r.raw.requests / 1000 },
    title: `keep-alive HTTPS GET at a moderate fixed rate (~${RATE}/s: ${PACED_CONNECTIONS} connections, each pausing ${(1000 * PACED_CONNECTIONS / RATE).toFixed(0)} ms between requests)`,
    metrics: [
      { key: 'p50_ms', label: 'p50 latency, ms', better: 'lower' },
      { key: 'p99_ms', label: 'p99 latency, ms', better: 'lower' },
      { key: 'rps', label: 'achieved requests/s', better: 'info' },
    ],
    run: async (peer, durationS) => {
      const r = await wrk(peer, { threads: 1, connections: PACED_CONNECTIONS, durationS, delayMs: Math.round(1000 * PACED_CONNECTIONS / RATE) });
      return { p50_ms: ms(r.latency_us.p50), p99_ms: ms(r.latency_us.p99), rps: r.requests / (r.duration_us / 1e6), errors: errorCount(r), raw: r };
    },
  },
  {
    id: 'handshake',
    cpu: { label: 'CPU ms per 1k connections', per: (r) => r.raw.requests / 1000 },
    title: 'one request per TLS connection, full handshakes (wrk -t2 -c32, Connection: close)',
    metrics: [{ key: 'cps', label: 'connections/s', better: 'higher' }],
    run: async (peer, durationS) => {
      const r = await wrk(peer, { threads: 2, connections: 32, durationS, headers: ['Connection: close'] });
      return { cps: r.requests / (r.duration_us / 1e6), errors: errorCount(r), raw: r };
    },
  },
  {
    id: 'resumed',
    cpu: { label: 'CPU ms per 1k connections', per: (r) => r.raw.connections / 1000 },
    title: 'one request per TLS connection, TLS 1.3 session resumption (Node client, 16 concurrent)',
    tlsOnly: true,
    metrics: [
      { key: 'cps', label: 'connections/s', better: 'higher' },
      { key: 'resumed_pct', label: 'connections resumed, %', better: 'info' },
    ],
    run: async (peer, durationS) => {
      const r = await nodeClient('tls-connections', { port: peer.port, ca: CERT.ca, concurrency: 16, duration: durationS, resume: 1 }, durationS);
      return { cps: r.per_s, resumed_pct: (100 * r.resumed) / Math.max(1, r.connections), errors: r.errors, raw: r };
    },
  },
  {
    id: '1mb',
    cpu: { label: 'CPU ms per 100 MiB', per: (r) => r.raw.bytes / MiB / 100 },
    title: '1 MiB responses, keep-alive (wrk -t2 -c16)',
    metrics: [{ key: 'mibps', label: 'MiB/s', better: 'higher' }],
    run: async (peer, durationS) => {
      const r = await wrk(peer, { path: '/1mb', threads: 2, connections: 16, durationS });
      return { mibps: r.bytes / MiB / (r.duration_us / 1e6), errors: errorCount(r), raw: r };
    },
  },
  {
    id: 'h2',
    cpu: { label: 'CPU ms per 1k requests', per: (r) => r.raw.done / 1000 },
    title: 'HTTP/2 GET, 64 B response, 64 streams over 8 connections (h2load -c8 -m8)',
    metrics: [{ key: 'rps', label: 'requests/s', better: 'higher' }],
    // nginx is configured without http2 here; direct is plain HTTP/1.1.
    h2Only: true,
    run: async (peer, durationS) => {
      const r = await h2load(peer, { clients: 8, streams: 8, durationS });
      if (r.protocol !== 'h2') throw new Error(`${peer.name} negotiated ${r.protocol}, not h2`);
      return { rps: r.per_s, errors: r.failed + r.errored, raw: r };
    },
  },
  {
    id: 'websocket',
    cpu: { label: 'CPU ms per 1k round trips', per: (r) => r.raw.round_trips / 1000 },
    title: 'WebSocket echo, 64 B messages, 32 connections, one message in flight each (Node client)',
    metrics: [
      { key: 'rtps', label: 'round trips/s', better: 'higher' },
      { key: 'p99_ms', label: 'p99 round trip, ms', better: 'lower' },
    ],
    run: async (peer, durationS) => {
      const url = `${peer.tls ? 'wss' : 'ws'}://localhost:${peer.port}/ws`;
      const r = await nodeClient('ws-echo', { url, ca: CERT.ca, connections: 32, duration: durationS }, durationS);
      return { rtps: r.per_s, p99_ms: r.rtt_ms.p99, errors: r.errors, raw: r };
    },
  },
];

function errorCount(r) {
  return Object.values(r.errors).reduce((a, b) => a + b, 0);
}

/** A tool's version line (stdout or stderr, whatever the exit code); exits with a hint when it is missing. */
function need(command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error?.code === 'ENOENT') {
    console.error(`bench: ${command} is not installed (apt-get install caddy nginx wrk)`);
    process.exit(2);
  }
  return `${result.stdout}${result.stderr}`.trim().split('\n')[0];
}

/** mulberry32: a small deterministic generator for the run order. */
function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A Fisher-Yates shuffled copy. */
function shuffled(items, random) {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Fraction of CPU time the whole machine was busy over `ms` (from /proc/stat). */
async function machineBusy(ms = 300) {
  const read = () => {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = fields[3] + fields[4];
    return { idle, total: fields.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await sleep(ms);
  const b = read();
  return b.total === a.total ? 0 : 1 - (b.idle - a.idle) / (b.total - a.total);
}

/**
 * Waits (up to QUIET_WAIT_MS) until the machine is nearly idle before a run: other
 * work on a small machine skews whichever peer happens to run next. Returns the busy
 * fraction seen last, recorded with the run.
 */
async function waitQuiet() {
  const deadline = Date.now() + QUIET_WAIT_MS;
  let busy = await machineBusy();
  while (busy > QUIET_BUSY && Date.now() < deadline) busy = await machineBusy();
  if (busy > QUIET_BUSY) console.log(`  (machine still ${Math.round(busy * 100)}% busy with other work; running anyway)`);
  return busy;
}

/** Checks that a peer really serves the upstream (not an error page) before measuring it. */
async function preflight(peer) {
  if (peer.tls) {
    const small = await get(peer.port, '/', CA_PEM);
    if (small.status !== 200 || !small.body.startsWith('aleph-edge bench upstream')) throw new Error(`${peer.name}: GET / answered ${small.status}: ${small.body.slice(0, 200)}`);
    const large = await get(peer.port, '/1mb', CA_PEM);
    if (large.status !== 200 || large.body.length !== MiB) throw new Error(`${peer.name}: GET /1mb answered ${large.status}, ${large.body.length} bytes`);
  }
  const url = `${peer.tls ? 'wss' : 'ws'}://localhost:${peer.port}/ws`;
  const ws = new WebSocket(url, { ca: CA_PEM });
  try {
    await new Promise((resolve, reject) => {
      ws.once('open', () => ws.send('ping'));
      ws.once('message', (data) => (String(data) === 'ping' ? resolve() : reject(new Error(`${peer.name}: ws echo sent back ${data}`))));
      ws.once('error', (error) => reject(new Error(`${peer.name}: ws: ${error.message}`)));
      setTimeout(() => reject(new Error(`${peer.name}: ws echo timed out`)), 5000).unref();
    });
  } finally {
    ws.terminate();
  }
}

function fmt(value) {
  if (!Number.isFinite(value)) return 'n/a';
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function markdown(summary, peers, meta) {
  const names = peers.map((p) => p.name);
  const lines = [
    `# aleph-edge benchmark, ${meta.started_at}`,
    '',
    `${meta.machine.cpus} x ${meta.machine.cpu_model}; Node ${meta.versions.node}, Caddy ${meta.versions.caddy}, ${meta.versions.nginx}, ${meta.versions.wrk}, ${meta.versions.openssl}; load average ${meta.loadavg.start[0].toFixed(2)} at start, ${meta.loadavg.end[0].toFixed(2)} at end.`,
    `aleph-edge ran as ${meta.edge_processes.primary} process + ${meta.edge_processes.workers} worker(s). Medians of ${ROUNDS} alternating rounds of ${DURATION} s per peer and workload; ratio = aleph-edge / Caddy (for latencies, lower is better).`,
    '',
    `| workload | metric | ${names.join(' | ')} | aleph-edge / Caddy |`,
    `|---|---|${names.map(() => '---:').join('|')}|---:|`,
  ];
  for (const w of summary) {
    for (const m of w.metrics) {
      const cells = names.map((n) => (!Number.isFinite(m.medians[n]) ? '-' : fmt(m.medians[n]) + (w.errors[n] ? ' (!)' : '')));
      const ratio = Number.isFinite(m.ratio) ? `${m.ratio.toFixed(2)}x` : '-';
      lines.push(`| ${w.id} | ${m.label} | ${cells.join(' | ')} | ${m.better === 'info' ? `(${ratio})` : ratio} |`);
    }
  }
  lines.push('', 'Workloads:', '');
  for (const w of summary) lines.push(`- **${w.id}**: ${w.title}`);
  if (summary.some((w) => Object.values(w.errors).some(Boolean))) {
    lines.push('', '(!) the peer had errors in that workload (see the JSON: connect/read/status/timeouts).');
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------

if (!existsSync(CLI)) {
  console.error(`bench: ${CLI} is missing; build first (npm run build)`);
  process.exit(2);
}
const versions = {
  node: process.version,
  caddy: need('caddy', ['version']).split(' ')[0],
  nginx: need('nginx', ['-v']).replace('nginx version: ', ''),
  wrk: need('wrk', ['--version']).split(' [')[0],
  openssl: need('openssl', ['version']).split(' ').slice(0, 2).join(' '),
  node_openssl: process.versions.openssl,
  h2load: need('h2load', ['--version']).split(' ').pop(),
};
const work = mkdtempSync(path.join(os.tmpdir(), 'aleph-edge-bench-'));
const CERT = makeCertificate(work);
const CA_PEM = readFileSync(CERT.ca);
const started = new Date();
const LOAD_START = os.loadavg();
let EDGE_PROCESSES = {};
const peers = [];
let stopping = false;
const stopAll = async () => {
  if (stopping) return;
  stopping = true;
  // aleph-edge last: it owns the upstream process the others proxy to.
  for (const peer of [...peers].reverse()) await peer.stop().catch(() => {});
  if (process.env.BENCH_KEEP !== "1") rmSync(work, { recursive: true, force: true });
  else console.error(`bench: work kept in ${work}`);
};
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => void stopAll().then(() => process.exit(130)));

try {
  const logLevel = process.env.BENCH_EDGE_LOG ?? 'warn';
  const edge = await startEdge({ dir: path.join(work, 'aleph-edge'), cert: CERT, caPem: CA_PEM, logLevel });
  peers.push(edge);
  if (PEER_NAMES.includes('caddy')) peers.push(await startCaddy({ dir: path.join(work, 'caddy'), cert: CERT, upstreamPort: edge.upstreamPort }));
  if (PEER_NAMES.includes('nginx')) peers.push(await startNginx({ dir: path.join(work, 'nginx'), cert: CERT, upstreamPort: edge.upstreamPort }));
  if (PEER_NAMES.includes('direct')) peers.push(directPeer(edge.upstreamPort));
  if (PEER_NAMES.includes('node-floor')) {
    const { workers } = edgeProcesses(edge.proc.child.pid);
    peers.push(await startNodeFloor({ dir: path.join(work, 'node-floor'), cert: CERT, upstreamPort: edge.upstreamPort, workers: Math.max(1, workers) }));
  }
  const variants = edgeVariants();
  for (const [i, v] of variants.entries()) peers.push(await startEdge({ ...v, dir: path.join(work, `aleph-edge-${i}`), cert: CERT, caPem: CA_PEM, logLevel }));
  const active = peers.filter((p) => PEER_NAMES.includes(p.name) || variants.some((v) => v.name === p.name));
  EDGE_PROCESSES = edgeProcesses(edge.proc.child.pid);
  for (const peer of active) await preflight(peer);
  console.log(`bench: peers ${active.map((p) => `${p.name} :${p.port}`).join(', ')}; upstream :${edge.upstreamPort}; ${ROUNDS} rounds x ${DURATION} s`);

  const selected = process.env.BENCH_WORKLOADS ? process.env.BENCH_WORKLOADS.split(',') : WORKLOADS.map((w) => w.id);
  const runs = [];
  const summary = [];
  for (const workload of WORKLOADS.filter((w) => selected.includes(w.id))) {
    const targets = active.filter((p) => (p.tls || !workload.tlsOnly) && (!workload.h2Only || p.name.startsWith('aleph-edge') || p.name === 'caddy'));
    const random = seededRandom(workload.id.length * 7919 + ROUNDS);
    // Warm-up: JIT, connection pools, caches of every peer; not measured.
    for (const peer of targets) await workload.run(peer, WARMUP);
    for (let round = 1; round <= ROUNDS; round++) {
      // The order is shuffled every round (seeded, so runs are repeatable): a run is
      // affected by the one before it (right after `direct`, which drives the shared
      // upstream at ~55k req/s, a peer measured up to ~25 % lower), so no peer may
      // always follow the same one.
      for (const peer of shuffled(targets, random)) {
        const busyBefore = await waitQuiet();
        const cpuBefore = cpuSeconds(peer);
        const result = await workload.run(peer, DURATION);
        const cpuAfter = cpuSeconds(peer);
        if (cpuBefore !== undefined && cpuAfter !== undefined) result.cpu_ms = (1000 * (cpuAfter - cpuBefore)) / workload.cpu.per(result);
        runs.push({ workload: workload.id, peer: peer.name, round, busy_before: busyBefore, ...result });
        const shown = [...workload.metrics.map((m) => `${m.key}=${fmt(result[m.key])}`), ...(result.cpu_ms === undefined ? [] : [`cpu_ms=${fmt(result.cpu_ms)}`])].join(" ");
        console.log(`  ${workload.id} round ${round} ${peer.name.padEnd(10)} ${shown}${result.errors ? ` errors=${result.errors}` : ''}`);
      }
    }
    const mine = runs.filter((r) => r.workload === workload.id);
    const errors = Object.fromEntries(targets.map((p) => [p.name, mine.filter((r) => r.peer === p.name).reduce((a, r) => a + (r.errors || 0), 0)]));
    summary.push({
      id: workload.id,
      title: workload.title,
      errors,
      metrics: [...workload.metrics, { key: 'cpu_ms', label: workload.cpu.label, better: 'lower' }].map((m) => {
        const medians = Object.fromEntries(targets.map((p) => [p.name, median(mine.filter((r) => r.peer === p.name).map((r) => r[m.key]))]));
        return { ...m, medians, ratio: medians['aleph-edge'] / medians.caddy };
      }),
    });
  }

  const meta = {
    started_at: started.toISOString(),
    finished_at: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model ?? 'unknown', kernel: os.release(), memory_mib: Math.round(os.totalmem() / MiB) },
    versions,
    edge_processes: EDGE_PROCESSES,
    loadavg: { start: LOAD_START, end: os.loadavg() },
    settings: { quick: QUICK, quiet_busy: QUIET_BUSY, edge_workers: process.env.BENCH_EDGE_WORKERS ?? 'default', rounds: ROUNDS, duration_s: DURATION, warmup_s: WARMUP, rate: RATE, edge_log: logLevel },
  };
  const table = markdown(summary, active, meta);
  const outDir = path.join(ROOT, '.bench-results');
  mkdirSync(outDir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  writeFileSync(path.join(outDir, `bench-${stamp}.json`), JSON.stringify({ ...meta, summary, runs }, null, 2));
  writeFileSync(path.join(outDir, `bench-${stamp}.md`), table);
  writeFileSync(path.join(outDir, 'latest.md'), table);
  console.log(`\n${table}\nbench: results in ${path.relative(process.cwd(), outDir)}/bench-${stamp}.{json,md}`);
} catch (error) {
  console.error(`bench: ${error.stack ?? error.message}`);
  process.exitCode = 1;
} finally {
  await stopAll();
}
