// New TLS connections per second, one HTTP request on each, from a single Node
// process: `--resume 1` offers the session (TLS 1.3 ticket) from the previous
// connection, so the server can skip the certificate and signature (resumption);
// `--resume 0` does full handshakes. Prints one JSON line:
//   {connections, duration_s, per_s, resumed, errors, latency_ms: {p50, p99}}
//
//   node bench/clients/tls-connections.mjs --port 8443 --ca ca.crt --concurrency 16 --duration 5 --resume 1
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { parseArgs, percentile } from '../lib/stats.mjs';

const args = parseArgs(process.argv.slice(2));
const port = Number(args.port);
const host = args.host ?? 'localhost';
const ca = readFileSync(args.ca);
const concurrency = Number(args.concurrency ?? 16);
const durationMs = Number(args.duration ?? 5) * 1000;
const resume = args.resume === '1';
const request = Buffer.from(`GET ${args.path ?? '/'} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

let connections = 0;
let resumed = 0;
let errors = 0;
const latencies = [];
const started = performance.now();
const deadline = started + durationMs;

function once(session) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let next = session;
    let ok = false;
    const socket = tls.connect({ host: '127.0.0.1', port, servername: host, ca, session, ALPNProtocols: ['http/1.1'] }, () => {
      if (socket.isSessionReused()) resumed++;
      socket.write(request);
    });
    socket.on('session', (s) => (next = s));
    socket.on('data', (chunk) => {
      if (!ok && chunk.subarray(0, 12).toString() === 'HTTP/1.1 200') ok = true;
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (ok) {
        connections++;
        latencies.push(performance.now() - t0);
      } else errors++;
      resolve(resume ? next : undefined);
    });
  });
}

async function worker() {
  let session;
  while (performance.now() < deadline) session = await once(session);
}

await Promise.all(Array.from({ length: concurrency }, worker));
const seconds = (performance.now() - started) / 1000;
process.stdout.write(`BENCH_JSON ${JSON.stringify({
  connections, duration_s: seconds, per_s: connections / seconds, resumed, errors,
  latency_ms: { p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
})}\n`);
