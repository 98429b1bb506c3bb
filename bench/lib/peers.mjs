// The peers under test, each on its own loopback port with the same certificate and
// the same upstream process: aleph-edge (from dist/, through its CLI), Caddy and nginx.
import { createWriteStream, existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, hashOf, startProcess, statusRequest, until, waitForPort } from './proc.mjs';

export const ROOT = path.resolve(fileURLToPath(new URL('../../', import.meta.url)));
export const CLI = path.join(ROOT, 'dist/src/cli.js');
export const UPSTREAM = path.join(ROOT, 'bench/upstream/server.mjs');
/** The host every client asks for: it resolves to 127.0.0.1 and is the certificate's name. */
export const HOST = 'localhost';
export const UPSTREAM_HASH = hashOf('aleph-edge bench upstream');

/** A TOML config for aleph-edge: `files` TLS with the shared pair, the upstream as a program routed from HOST. */
export function edgeConfig({ dir, port, cert, extraOrchestrator = [], program = {}, workers = process.env.BENCH_EDGE_WORKERS }) {
  const hash = program.hash ?? UPSTREAM_HASH;
  return [
    '[server]',
    'domain = "edge.invalid"',
    `https_listen = ["127.0.0.1:${port}"]`,
    'http_listen = []',
    ...(workers ? [`workers = ${Number(workers)}`] : []),
    `status_socket = ${JSON.stringify(path.join(dir, 'status.sock'))}`,
    '[tls]',
    'mode = "files"',
    `storage = ${JSON.stringify(path.join(dir, 'certs'))}`,
    '[[tls.files]]',
    `hosts = ["${HOST}"]`,
    `cert = ${JSON.stringify(cert.cert)}`,
    `key = ${JSON.stringify(cert.key)}`,
    '[orchestrator]',
    'driver = "process"',
    'idle_timeout = "24h"',
    ...extraOrchestrator,
    '[[programs.local]]',
    `name = "${program.name ?? 'bench-upstream'}"`,
    `hash = "${hash}"`,
    `command = [${JSON.stringify(process.execPath)}, ${JSON.stringify(UPSTREAM)}]`,
    '[[routes]]',
    `host = "${HOST}"`,
    `program = "${hash}"`,
    '',
  ].join('\n');
}

/** GET https://localhost:port/path, verified against the bench CA; resolves with { status, body }. */
export function get(port, pathname, ca, agent = false) {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, servername: HOST, ca, path: pathname, headers: { host: HOST }, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    }).on('error', reject).setTimeout(90_000, function timedOut() {
      this.destroy(new Error(`GET ${pathname} on :${port} timed out`));
    });
  });
}

/**
 * Starts aleph-edge through its CLI, boots the upstream with a first request and
 * reads the upstream's endpoint from the status socket (the other peers proxy to it).
 */
export async function startEdge({ dir, cert, caPem, logLevel, name = 'aleph-edge', cli = CLI, nodeArgs = splitArgs(process.env.BENCH_EDGE_NODE_ARGS) }) {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const configFile = path.join(dir, 'aleph-edge.toml');
  writeFileSync(configFile, edgeConfig({ dir, port, cert }));
  // BENCH_EDGE_NODE_ARGS: extra node flags, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" (see bench/profile-summary.mjs).
  const proc = startProcess(name, process.execPath, [...nodeArgs, cli, 'run', '--config', configFile], {
    env: { ALEPH_EDGE_LOG: logLevel },
    log: createWriteStream(path.join(dir, 'aleph-edge.log')),
  });
  await waitForPort(port, proc);
  const first = await get(port, '/', caPem);
  if (first.status !== 200) throw new Error(`aleph-edge answered ${first.status} for the upstream: ${first.body}`);
  const socket = path.join(dir, 'status.sock');
  await until(() => existsSync(socket), 90_000, 'the status socket');
  const vms = JSON.parse((await statusRequest(socket, 'GET', '/vms')).body);
  const vm = vms.find((v) => v.hash === UPSTREAM_HASH);
  const match = /^127\.0\.0\.1:(\d+)$/.exec(vm?.endpoint ?? '');
  if (!match) throw new Error(`no upstream endpoint in /vms: ${JSON.stringify(vms)}`);
  return { name, port, tls: true, upstreamPort: Number(match[1]), stop: () => proc.stop('SIGTERM'), proc };
}

/** "--a --b=1" -> ['--a', '--b=1'] */
export function splitArgs(text) {
  return (text ?? '').split(' ').filter(Boolean);
}

/**
 * BENCH_EDGE_VARIANTS: more aleph-edge peers for an A/B in one run, as JSON
 * {"label": {"args": "node flags", "cli": "/other/checkout/dist/src/cli.js"}}; each
 * runs as peer `aleph-edge:<label>` with its own upstream process.
 */
export function edgeVariants(text = process.env.BENCH_EDGE_VARIANTS) {
  if (!text) return [];
  return Object.entries(JSON.parse(text)).map(([label, v]) => ({ name: `aleph-edge:${label}`, nodeArgs: splitArgs(v.args), cli: v.cli ?? CLI }));
}

/** The `node-floor` peer (bench/upstream/node-floor.mjs), with as many workers as aleph-edge runs. */
export async function startNodeFloor({ dir, cert, upstreamPort, workers }) {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const script = path.join(ROOT, 'bench/upstream/node-floor.mjs');
  // BENCH_FLOOR_NODE_ARGS: node flags for node-floor (its profile next to aleph-edge's, e.g. --cpu-prof).
  const proc = startProcess('node-floor', process.execPath, [...splitArgs(process.env.BENCH_FLOOR_NODE_ARGS), script, String(port), String(upstreamPort), cert.cert, cert.key, String(workers)], {
    log: createWriteStream(path.join(dir, 'node-floor.log')),
  });
  await waitForPort(port, proc);
  return { name: 'node-floor', port, tls: true, stop: () => proc.stop('SIGTERM'), proc };
}

export async function startCaddy({ dir, cert, upstreamPort }) {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const config = {
    admin: { disabled: true },
    logging: { logs: { default: { level: 'ERROR' } } },
    storage: { module: 'file_system', root: path.join(dir, 'data') },
    apps: {
      tls: { certificates: { load_files: [{ certificate: cert.cert, key: cert.key, tags: ['bench'] }] } },
      http: {
        servers: {
          bench: {
            listen: [`127.0.0.1:${port}`],
            protocols: ['h1', 'h2'],
            automatic_https: { disable: true },
            tls_connection_policies: [{ certificate_selection: { any_tag: ['bench'] } }],
            routes: [{ handle: [{ handler: 'reverse_proxy', upstreams: [{ dial: `127.0.0.1:${upstreamPort}` }] }] }],
          },
        },
      },
    },
  };
  const configFile = path.join(dir, 'caddy.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const proc = startProcess('caddy', 'caddy', ['run', '--config', configFile], {
    env: { HOME: dir, XDG_DATA_HOME: path.join(dir, 'data'), XDG_CONFIG_HOME: path.join(dir, 'config') },
    log: createWriteStream(path.join(dir, 'caddy.log')),
  });
  await waitForPort(port, proc);
  return { name: 'caddy', port, tls: true, stop: () => proc.stop('SIGTERM'), proc };
}

export async function startNginx({ dir, cert, upstreamPort }) {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const conf = `
worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 10000000;
  upstream bench_upstream { server 127.0.0.1:${upstreamPort}; keepalive 64; keepalive_requests 10000000; }
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${cert.cert};
    ssl_certificate_key ${cert.key};
    ssl_session_cache shared:bench:10m;
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_max_temp_file_size 0;
    }
  }
}
`;
  const configFile = path.join(dir, 'nginx.conf');
  writeFileSync(configFile, conf);
  const proc = startProcess('nginx', 'nginx', ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', configFile, '-g', 'daemon off;'], {
    log: createWriteStream(path.join(dir, 'nginx.log')),
  });
  await waitForPort(port, proc);
  // SIGQUIT: graceful shutdown of the master and its workers.
  return { name: 'nginx', port, tls: true, stop: () => proc.stop('SIGQUIT'), proc };
}

/** The upstream itself, over plain HTTP: the reference for what the machine can do without a proxy. */
export function directPeer(upstreamPort) {
  return { name: 'direct', port: upstreamPort, tls: false, stop: async () => {} };
}

export function childPids(pid) {
  const out = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
    if (text) out.push(...text.split(' ').map(Number));
  }
  return out;
}

/**
 * CPU seconds (user + system) used so far by a peer's own processes: aleph-edge's
 * primary and workers (not the programs it runs), nginx's master and workers,
 * Caddy's one process. Read around a run, it gives CPU time per unit of work, which
 * stays meaningful on a busy machine where throughput does not.
 */
export function cpuSeconds(peer) {
  const root = peer.proc?.child.pid;
  if (!root) return undefined;
  const pids = [root, ...childPids(root).filter((pid) => {
    if (peer.name === 'nginx' || peer.name === 'node-floor') return true;
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('worker');
    } catch {
      return false;
    }
  })];
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks / CLOCK_TICKS;
}
const CLOCK_TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux

/** How aleph-edge runs: its CLI process and the direct children that are its own workers (not programs). */
export function edgeProcesses(pid) {
  const workers = childPids(pid).filter((child) => {
    const cmdline = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0');
    return cmdline.includes(CLI) && cmdline.includes('worker');
  }).length;
  return { primary: 1, workers };
}
