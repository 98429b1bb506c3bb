// Cold-start overhead of the process driver (issue 3):
//
//   node bench/cold-start.mjs          (after npm run build)
//
// 1. Sequential: COLD_RUNS (200) times, stop the program through the status socket
//    (POST /vms/<hash>/stop), then send one request over an already-open keep-alive
//    TLS connection and time it until the response. The program (bench/upstream/
//    server.mjs) reports its own start-to-ready time: from its process's
//    performance.timeOrigin to its listen callback. Our overhead = request-to-response
//    minus that. aleph-edge's own boot_ms (spawn + readiness, from /vms) is reported too.
// 2. Single flight: COLD_SF_ROUNDS (5) times, 100 concurrent requests (COLD_SF_CONCURRENCY)
//    on 100 open connections to the stopped program: the number of boots (distinct pids
//    answering, and the aleph_edge_boots_total delta) must be 1; latency distribution.
// 3. Reference: COLD_BASELINE_RUNS (50) times, the same program spawned directly, its port
//    polled every 2 ms, then the same request over plain HTTP: what spawning a Node
//    program costs before its timeOrigin plus tight polling (a floor for any supervisor).
//
// Writes .bench-results/cold-start-<time>.{json,md}. BENCH_QUICK=1: 20 runs, 1 round.
// Nothing here asserts a timing.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { spawn } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { makeCertificate } from './lib/cert.mjs';
import { CLI, HOST, ROOT, UPSTREAM, UPSTREAM_HASH, edgeConfig } from './lib/peers.mjs';
import { freePort, sleep, startProcess, statusRequest, until, waitForPort } from './lib/proc.mjs';
import { percentile } from './lib/stats.mjs';

const QUICK = process.env.BENCH_QUICK === '1';
const RUNS = Number(process.env.COLD_RUNS ?? (QUICK ? 20 : 200));
const SF_ROUNDS = Number(process.env.COLD_SF_ROUNDS ?? (QUICK ? 1 : 5));
const SF_CONCURRENCY = Number(process.env.COLD_SF_CONCURRENCY ?? 100);
const BASELINE_RUNS = Number(process.env.COLD_BASELINE_RUNS ?? (QUICK ? 10 : 50));

if (!existsSync(CLI)) {
  console.error(`cold-start: ${CLI} is missing; build first (npm run build)`);
  process.exit(2);
}

const work = mkdtempSync(path.join(os.tmpdir(), 'aleph-edge-cold-'));
const cert = makeCertificate(work);
const ca = readFileSync(cert.ca);
const port = await freePort();
const socket = path.join(work, 'status.sock');
const configFile = path.join(work, 'aleph-edge.toml');
// hold_queue covers the single-flight burst; everything else is the default.
writeFileSync(configFile, edgeConfig({ dir: work, port, cert, extraOrchestrator: [`hold_queue = ${Math.max(100, SF_CONCURRENCY)}`] }));
const edge = startProcess('aleph-edge', process.execPath, [CLI, 'run', '--config', configFile], {
  env: { ALEPH_EDGE_LOG: process.env.BENCH_EDGE_LOG ?? 'warn' },
  log: createWriteStream(path.join(work, 'aleph-edge.log')),
});

const status = async (method, p) => statusRequest(socket, method, p);

/** GET /__timing through aleph-edge on `agent`; resolves with the client-side time and the program's answer. */
function timed(agent) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = https.get({ host: '127.0.0.1', port, servername: HOST, ca, path: '/__timing', headers: { host: HOST }, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        const ms = performance.now() - t0;
        if (res.statusCode !== 200) return resolve({ ms, status: res.statusCode, reused: req.reusedSocket });
        const timing = JSON.parse(body);
        resolve({ ms, status: 200, reused: req.reusedSocket, pid: timing.pid, programMs: timing.start_to_ready_ms });
      });
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('request timed out')));
  });
}

async function stopProgram() {
  const reply = await status('POST', `/vms/${UPSTREAM_HASH}/stop`);
  if (reply.status !== 200) throw new Error(`stop answered ${reply.status}: ${reply.body}`);
  await until(async () => !JSON.parse((await status('GET', '/vms')).body).some((v) => v.hash === UPSTREAM_HASH), 10_000, 'the program to stop');
}

async function bootsTotal() {
  const text = (await status('GET', '/metrics')).body;
  return text.split('\n').filter((l) => l.startsWith('aleph_edge_boots_total')).reduce((a, l) => a + Number(l.split(' ').pop()), 0);
}

/** Spawn the program directly, poll its port every 2 ms, GET /__timing: the floor for any supervisor. */
async function baselineOnce() {
  const upstreamPort = await freePort();
  const t0 = performance.now();
  const child = spawn(process.execPath, [UPSTREAM], { env: { PATH: process.env.PATH, PORT: String(upstreamPort), HOST: '127.0.0.1' }, stdio: 'ignore' });
  try {
    for (;;) {
      const up = await new Promise((resolve) => {
        const s = net.connect(upstreamPort, '127.0.0.1');
        s.once('connect', () => { s.destroy(); resolve(true); });
        s.once('error', () => resolve(false));
      });
      if (up) break;
      if (performance.now() - t0 > 20_000) throw new Error('baseline program did not listen');
      await sleep(2);
    }
    const body = await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: upstreamPort, path: '/__timing', agent: false }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve(b));
      }).on('error', reject);
    });
    const total = performance.now() - t0;
    const programMs = JSON.parse(body).start_to_ready_ms;
    return { total_ms: total, program_ms: programMs, overhead_ms: total - programMs };
  } finally {
    child.kill('SIGKILL');
    await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', resolve)));
  }
}

const dist = (values) => ({
  p50: percentile(values, 50), p90: percentile(values, 90), p99: percentile(values, 99),
  min: Math.min(...values), max: Math.max(...values), n: values.length,
});
const f = (v) => v.toFixed(1);

let exitCode = 0;
try {
  await waitForPort(port, edge);
  await until(() => existsSync(socket), 15_000, 'the status socket');

  // --- sequential cold starts -------------------------------------------------
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const warm = await timed(agent); // opens the TLS connection and boots the program once
  if (warm.status !== 200) throw new Error(`first request answered ${warm.status}`);
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    await stopProgram();
    const r = await timed(agent);
    if (r.status !== 200) throw new Error(`cold request ${i} answered ${r.status}`);
    const vm = JSON.parse((await status('GET', '/vms')).body).find((v) => v.hash === UPSTREAM_HASH);
    runs.push({ total_ms: r.ms, program_ms: r.programMs, overhead_ms: r.ms - r.programMs, edge_boot_ms: vm?.boot_ms ?? null, reused_connection: r.reused });
    if ((i + 1) % 50 === 0) console.log(`  ${i + 1}/${RUNS} cold starts`);
  }
  agent.destroy();

  // --- single flight -------------------------------------------------------------
  const flights = [];
  for (let round = 1; round <= SF_ROUNDS; round++) {
    const many = new https.Agent({ keepAlive: true, maxSockets: SF_CONCURRENCY });
    // Open SF_CONCURRENCY connections while the program is warm, so the burst measures boots, not handshakes.
    await Promise.all(Array.from({ length: SF_CONCURRENCY }, () => timed(many)));
    await stopProgram();
    const before = await bootsTotal();
    const replies = await Promise.all(Array.from({ length: SF_CONCURRENCY }, () => timed(many)));
    const boots = (await bootsTotal()) - before;
    const ok = replies.filter((r) => r.status === 200);
    const statuses = {};
    for (const r of replies) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    flights.push({
      round, boots, distinct_pids: new Set(ok.map((r) => r.pid)).size, statuses,
      reused_connections: replies.filter((r) => r.reused).length,
      program_ms: ok[0]?.programMs ?? null,
      latency_ms: dist(replies.map((r) => r.ms)),
    });
    many.destroy();
    console.log(`  single flight round ${round}: ${SF_CONCURRENCY} requests, ${boots} boot(s), statuses ${JSON.stringify(statuses)}`);
  }

  // --- reference: the same program spawned directly -----------------------------
  const baseline = [];
  for (let i = 0; i < BASELINE_RUNS; i++) baseline.push(await baselineOnce());

  const seq = {
    total_ms: dist(runs.map((r) => r.total_ms)),
    program_start_to_ready_ms: dist(runs.map((r) => r.program_ms)),
    overhead_ms: dist(runs.map((r) => r.overhead_ms)),
    edge_boot_ms: dist(runs.map((r) => r.edge_boot_ms).filter((v) => v !== null)),
    reused_connection: runs.filter((r) => r.reused_connection).length,
  };
  const lines = [
    `# aleph-edge cold start (process driver), ${new Date().toISOString()}`,
    '',
    `${os.cpus().length} x ${os.cpus()[0]?.model}, Node ${process.version}, load average ${os.loadavg()[0].toFixed(2)}.`,
    '',
    `Sequential cold starts: ${RUNS} (program stopped through the status socket before each; request on a warm TLS connection: ${seq.reused_connection}/${RUNS}).`,
    '',
    '| ms | p50 | p90 | p99 | min | max |',
    '|---|---:|---:|---:|---:|---:|',
    ...[
      ['first request -> first response', seq.total_ms],
      ["program's own start-to-ready", seq.program_start_to_ready_ms],
      ['**our overhead** (difference)', seq.overhead_ms],
      ["aleph-edge's boot_ms (spawn + readiness)", seq.edge_boot_ms],
      [`reference (${BASELINE_RUNS} runs): spawn directly + 2 ms port polling + GET, total`, dist(baseline.map((b) => b.total_ms))],
      ['reference: the same minus start-to-ready (spawn/exec cost before timeOrigin + polling)', dist(baseline.map((b) => b.overhead_ms))],
    ].map(([label, d]) => `| ${label} | ${f(d.p50)} | ${f(d.p90)} | ${f(d.p99)} | ${f(d.min)} | ${f(d.max)} |`),
    '',
    `Single flight: ${SF_CONCURRENCY} concurrent requests to a stopped program, ${SF_ROUNDS} round(s).`,
    '',
    '| round | boots | pids | statuses | latency p50 | p90 | p99 | max | program start-to-ready |',
    '|---:|---:|---:|---|---:|---:|---:|---:|---:|',
    ...flights.map((fl) => `| ${fl.round} | ${fl.boots} | ${fl.distinct_pids} | ${Object.entries(fl.statuses).map(([s, n]) => `${n}x${s}`).join(' ')} | ${f(fl.latency_ms.p50)} | ${f(fl.latency_ms.p90)} | ${f(fl.latency_ms.p99)} | ${f(fl.latency_ms.max)} | ${fl.program_ms === null ? '-' : f(fl.program_ms)} |`),
    '',
  ];
  const table = lines.join('\n');
  const outDir = path.join(ROOT, '.bench-results');
  mkdirSync(outDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(path.join(outDir, `cold-start-${stamp}.json`), JSON.stringify({ runs: RUNS, sequential: seq, single_flight: flights, samples: runs, baseline }, null, 2));
  writeFileSync(path.join(outDir, `cold-start-${stamp}.md`), table);
  console.log(`\n${table}\ncold-start: results in .bench-results/cold-start-${stamp}.{json,md}`);
} catch (error) {
  console.error(`cold-start: ${error.stack ?? error.message}\n${edge.tail()}`);
  exitCode = 1;
} finally {
  await edge.stop('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
process.exit(exitCode);
