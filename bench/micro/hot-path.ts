// Micro-benchmark of the per-request work that is ours (not Node's or the proxy
// library's): routing a request and building the upstream/downstream headers.
// Prints operations per second.
//   npm run build && node dist/bench/micro/hot-path.js
import { hashToLabel } from '../../src/common/index.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { downstreamResponseHeaders, upstreamRequestRawHeaders } from '../../src/proxy/headers.js';
import { Router } from '../../src/routing/index.js';

const hash = 'ab'.repeat(32);
const router = new Router({ domain: 'vm.example.org', routes: [{ host: 'app.example.com', program: hash }], metrics: new MetricsRegistry() });
const requestHeaders = {
  host: 'vm.example.org', 'user-agent': 'wrk', accept: '*/*', connection: 'keep-alive',
  'x-forwarded-for': '6.6.6.6', 'accept-encoding': 'gzip',
};
const rawRequest = {
  headers: requestHeaders,
  rawHeaders: Object.entries(requestHeaders).flatMap(([name, value]) => [name === 'host' ? 'Host' : name, value]),
};
const responseHeaders = { 'content-type': 'text/plain', 'content-length': '2', date: 'Sun, 29 Nov 2026 04:00:00 GMT', connection: 'keep-alive', 'keep-alive': 'timeout=5' };
const info = { clientIp: '127.0.0.1', proto: 'https' as const, host: 'vm.example.org' };

async function measure(name: string, iterations: number, fn: () => unknown): Promise<void> {
  for (let i = 0; i < 10_000; i++) await fn(); // warm up
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) await fn();
  const ns = Number(process.hrtime.bigint() - start);
  console.log(`${name.padEnd(34)} ${(iterations / (ns / 1e9)).toFixed(0).padStart(10)} ops/s  ${(ns / iterations).toFixed(0).padStart(6)} ns/op`);
}

const n = Number(process.env.ITERATIONS ?? 200_000);
await measure('route /vm/<hash>/path', n, () => router.route({ host: 'vm.example.org', path: `/vm/${hash}/state/increment?x=1` }));
await measure('route base32 label', n, () => router.route({ host: `${hashToLabel(hash)}.vm.example.org`, path: '/state' }));
await measure('route static host', n, () => router.route({ host: 'app.example.com:443', path: '/' }));
await measure('upstream request headers (raw)', n, () => upstreamRequestRawHeaders(rawRequest, info));
await measure('downstream response headers', n, () => downstreamResponseHeaders(responseHeaders, hash));
