// `node bench/tls.mjs` (after `npm run build`): time from the first request for a new
// host to its first response, certificate issuance included, aleph-edge vs Caddy
// (Debian's 2.6.2) with on-demand TLS, against the same Pebble (+ challtestsrv) on
// loopback. Each peer gets BENCH_TLS_HOSTS new hosts (default 20), requested one
// after another over fresh connections verified against Pebble's root; prints the
// medians and the ratio aleph-edge / Caddy. Both proxy to an already running
// upstream (aleph-edge's program is warmed by one request before timing).
// Needs: pebble, pebble-challtestsrv, caddy on PATH.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, hashOf, sleep, startProcess, waitForPort } from './lib/proc.mjs';
import { median } from './lib/stats.mjs';

const ROOT = path.resolve(fileURLToPath(new URL('../', import.meta.url)));
const { startPebble, FIXTURES } = await import(path.join(ROOT, 'dist/test/tls/acme-harness.js'));
const HOSTS = Number(process.env.BENCH_TLS_HOSTS ?? 20);
const HELLO = path.join(FIXTURES, 'hello.js');

function timedGet(port, host, ca) {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, servername: host, headers: { host }, path: '/', ca, agent: false, timeout: 30_000 }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`${host}: status ${res.statusCode}`));
        resolve(Number(process.hrtime.bigint() - started) / 1e6);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${host}: timed out`)));
    req.on('error', reject);
  });
}

async function firstResponses(port, hosts, ca) {
  const times = [];
  for (const host of hosts) times.push(await timedGet(port, host, ca));
  return times;
}

async function runEdge(pebble, root, dir) {
  const hash = hashOf('bench tls hello');
  const hosts = Array.from({ length: HOSTS }, (_, i) => `e${i}.bench.test`);
  const lines = [
    '[server]', 'domain = "edge.bench.test"',
    `https_listen = ["127.0.0.1:${pebble.tlsPort}"]`, `http_listen = ["127.0.0.1:${pebble.httpPort}"]`,
    `status_socket = "${path.join(dir, 'edge.sock')}"`, 'workers = 1',
    '[tls]', 'mode = "acme"', `storage = "${path.join(dir, 'edge-certs')}"`, 'email = "ops@bench.test"',
    `directory = "${pebble.directory}"`, `directory_ca = "${pebble.apiCertPath}"`,
    'issue_rate = { burst = 100, interval = "1m" }',
    '[routing]', `dns_servers = ["127.0.0.1:${pebble.dnsPort}"]`,
    '[orchestrator]', 'driver = "process"',
    '[[programs.local]]', 'name = "hello"', `hash = "${hash}"`, `command = [${JSON.stringify(process.execPath)}, ${JSON.stringify(HELLO)}]`,
  ];
  for (const host of ['warm.bench.test', ...hosts]) lines.push('[[routes]]', `host = "${host}"`, `program = "${hash}"`);
  const config = path.join(dir, 'edge.toml');
  writeFileSync(config, lines.join('\n') + '\n');
  const proc = startProcess('aleph-edge', process.execPath, [path.join(ROOT, 'dist/src/cli.js'), 'run', '--config', config], {
    env: { ALEPH_EDGE_LOG: process.env.BENCH_EDGE_LOG ?? 'warn' }, log: createWriteStream(path.join(dir, 'edge.log')),
  });
  try {
    await waitForPort(pebble.tlsPort, proc);
    await timedGet(pebble.tlsPort, 'warm.bench.test', root); // account registration + program boot, not timed
    return await firstResponses(pebble.tlsPort, hosts, root);
  } finally {
    await proc.stop('SIGTERM');
  }
}

async function runCaddy(pebble, root, dir) {
  const upstreamPort = await freePort();
  const upstream = startProcess('upstream', process.execPath, [HELLO], { env: { PORT: String(upstreamPort) } });
  const ask = http.createServer((_req, res) => res.end('ok'));
  await new Promise((resolve) => ask.listen(0, '127.0.0.1', resolve));
  const hosts = Array.from({ length: HOSTS }, (_, i) => `c${i}.bench.test`);
  const caddyfile = `{
	admin off
	http_port ${pebble.httpPort}
	https_port ${pebble.tlsPort}
	acme_ca ${pebble.directory}
	acme_ca_root ${pebble.apiCertPath}
	email ops@bench.test
	storage file_system ${path.join(dir, 'caddy-data')}
	on_demand_tls {
		ask http://127.0.0.1:${ask.address().port}/
	}
	log {
		level ERROR
	}
}
https:// {
	bind 127.0.0.1
	tls {
		on_demand
	}
	reverse_proxy 127.0.0.1:${upstreamPort}
}
`;
  const config = path.join(dir, 'Caddyfile');
  writeFileSync(config, caddyfile);
  const caddyHome = path.join(dir, 'caddy-home');
  mkdirSync(caddyHome, { recursive: true });
  const proc = startProcess('caddy', 'caddy', ['run', '--config', config, '--adapter', 'caddyfile'], {
    env: { HOME: caddyHome, XDG_DATA_HOME: path.join(caddyHome, 'data'), XDG_CONFIG_HOME: path.join(caddyHome, 'config') },
    log: createWriteStream(path.join(dir, 'caddy.log')),
  });
  try {
    await waitForPort(upstreamPort, upstream);
    await waitForPort(pebble.tlsPort, proc);
    await timedGet(pebble.tlsPort, 'warm.bench.test', root); // account registration, not timed
    return await firstResponses(pebble.tlsPort, hosts, root);
  } finally {
    await proc.stop('SIGTERM');
    await upstream.stop('SIGTERM');
    ask.close();
  }
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'aleph-edge-bench-tls-'));
const pebble = await startPebble();
try {
  const root = await pebble.root();
  const edge = await runEdge(pebble, root, dir);
  await sleep(200);
  const caddy = await runCaddy(pebble, root, dir);
  const fmt = (v) => `${v.toFixed(1)} ms`;
  const edgeMedian = median(edge);
  const caddyMedian = median(caddy);
  console.log(`first response for a new host (issuance included), median of ${HOSTS} hosts, same Pebble:`);
  console.log(`  aleph-edge  ${fmt(edgeMedian)}   (min ${fmt(Math.min(...edge))}, max ${fmt(Math.max(...edge))})`);
  console.log(`  caddy       ${fmt(caddyMedian)}   (min ${fmt(Math.min(...caddy))}, max ${fmt(Math.max(...caddy))})`);
  console.log(`  ratio aleph-edge / caddy = ${(edgeMedian / caddyMedian).toFixed(2)}`);
  if (process.env.BENCH_TLS_JSON) writeFileSync(process.env.BENCH_TLS_JSON, JSON.stringify({ hosts: HOSTS, edge, caddy, ratio: edgeMedian / caddyMedian }, null, 2));
} finally {
  await pebble.stop();
  if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
  else console.log(`kept ${dir}`);
}
