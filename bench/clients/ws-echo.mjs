// WebSocket echo round trips: `--connections` sockets, each sends a message, waits for
// its echo, sends the next, for `--duration` seconds. Prints one JSON line:
//   {round_trips, duration_s, per_s, errors, rtt_ms: {p50, p99}}
//
//   node bench/clients/ws-echo.mjs --url wss://localhost:8443/ws --ca ca.crt --connections 32 --duration 5
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { parseArgs, percentile } from '../lib/stats.mjs';

const args = parseArgs(process.argv.slice(2));
const url = args.url;
const ca = args.ca ? readFileSync(args.ca) : undefined;
const connections = Number(args.connections ?? 32);
const durationMs = Number(args.duration ?? 5) * 1000;
const message = Buffer.alloc(Number(args.size ?? 64), 'm');

let roundTrips = 0;
let errors = 0;
const rtts = [];

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca, servername: 'localhost', perMessageDeflate: false, headers: { host: 'localhost' } });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

const sockets = await Promise.all(Array.from({ length: connections }, open));
const started = performance.now();
const deadline = started + durationMs;
await Promise.all(sockets.map((ws) => new Promise((resolve) => {
  let sentAt = 0;
  const send = () => {
    sentAt = performance.now();
    ws.send(message);
  };
  ws.on('message', () => {
    const now = performance.now();
    roundTrips++;
    rtts.push(now - sentAt);
    if (now < deadline) send();
    else resolve();
  });
  ws.on('error', () => { errors++; resolve(); });
  ws.on('close', resolve);
  send();
})));
const seconds = (performance.now() - started) / 1000;
for (const ws of sockets) ws.terminate();
process.stdout.write(`BENCH_JSON ${JSON.stringify({
  round_trips: roundTrips, duration_s: seconds, per_s: roundTrips / seconds, errors,
  rtt_ms: { p50: percentile(rtts, 50), p99: percentile(rtts, 99) },
})}\n`);
