import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { AlephEdgeNode } from '../../src/app/index.js';
import { setLogLevel } from '../../src/common/index.js';
import { loadConfig, type Settings } from '../../src/config/index.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');

export interface TestProgram {
  name: string;
  script?: string; // absolute path of a node script
  /** An ASGI app instead of a script: `asgi` + `code` in the entry (served by guest/aleph_asgi). */
  asgi?: { app: string; code: string };
  /** Any command line instead (it gets $HOST and $PORT in its environment). */
  command?: string[];
  env?: Record<string, string>;
  memoryMib?: number;
  healthPath?: string;
  requestTimeout?: string;
}

export interface TestNodeOptions {
  programs: TestProgram[];
  domain?: string;
  /** Extra lines for [orchestrator], e.g. 'idle_timeout = "300ms"'. */
  orchestrator?: string[];
  /** Extra TOML appended as is (routes, routing...). */
  extra?: string;
  dir?: string;
  /** server.workers; default 1 (everything in the test process). */
  workers?: number;
  /** Extra lines for [tls], e.g. 'issue_rate = { burst = 2, interval = "1h" }'. */
  tls?: string[];
  /** Extra key = value lines for [server] (not tables). */
  serverKeys?: string[];
}

export function programHash(name: string): string {
  return createHash('sha256').update(`test program ${name}`).digest('hex');
}

export function toml(options: TestNodeOptions, dir: string): string {
  const domain = options.domain ?? 'edge.test';
  const lines = [
    '[server]',
    `domain = "${domain}"`,
    'https_listen = ["127.0.0.1:8443"]', // replaced by port 0 after loading
    'http_listen = ["127.0.0.1:8080"]',
    `status_socket = "${path.join(dir, 'status.sock')}"`,
    'drain_timeout = "5s"',
    `workers = ${options.workers ?? 1}`,
    ...(options.serverKeys ?? []),
    '[tls]',
    'mode = "internal"',
    `storage = "${path.join(dir, 'certs')}"`,
    ...(options.tls ?? []),
    '[orchestrator]',
    'driver = "process"',
    'stop_grace = "2s"',
    ...(options.orchestrator ?? []),
  ];
  for (const program of options.programs) {
    lines.push(
      '[[programs.local]]',
      `name = "${program.name}"`,
      `hash = "${programHash(program.name)}"`,
      ...(program.asgi
        ? [`asgi = "${program.asgi.app}"`, `code = ${JSON.stringify(program.asgi.code)}`]
        : [`command = ${JSON.stringify(program.command ?? [process.execPath, program.script])}`]),
      `memory_mib = ${program.memoryMib ?? 64}`,
    );
    if (program.healthPath) lines.push(`health_path = "${program.healthPath}"`);
    if (program.requestTimeout) lines.push(`request_timeout = "${program.requestTimeout}"`);
    if (program.env) {
      lines.push(`env = { ${Object.entries(program.env).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(', ')} }`);
    }
  }
  if (options.extra) lines.push(options.extra);
  return lines.join('\n') + '\n';
}

export interface TestNode {
  node: AlephEdgeNode;
  settings: Settings;
  dir: string;
  configFile: string;
  domain: string;
  httpsPort: number;
  httpPort: number;
  socket: string;
  ca: string;
  close(): Promise<void>;
}

/** A real node on loopback (ports chosen by the kernel), internal CA, process driver. */
export async function startTestNode(options: TestNodeOptions): Promise<TestNode> {
  const dir = options.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-')));
  const configFile = path.join(dir, 'aleph-edge.toml');
  await writeFile(configFile, toml(options, dir));
  const settings = await loadConfig(configFile);
  settings.server.httpsListen = [{ host: '127.0.0.1', port: 0 }];
  settings.server.httpListen = [{ host: '127.0.0.1', port: 0 }];
  const node = await AlephEdgeNode.start(settings, { version: 'test', inherited: [] });
  const ca = await readFile(path.join(dir, 'certs/internal/ca.crt'), 'utf8');
  return {
    node, settings, dir, configFile, ca,
    domain: settings.server.domain,
    httpsPort: node.port('https')!,
    httpPort: node.port('http')!,
    socket: settings.server.statusSocket,
    close: async () => {
      await node.drain();
      if (!options.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface RequestOptions {
  host: string; // SNI and Host header
  path: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  servername?: string; // SNI, when different from host
}

/** One HTTPS request through the node, verified against the node's CA. */
export function request(node: TestNode, options: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1',
      port: node.httpsPort,
      servername: options.servername ?? options.host,
      ca: node.ca,
      method: options.method ?? 'GET',
      path: options.path,
      headers: { host: options.host, ...options.headers },
      agent: false,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * Waits for `check` to hold. `timeoutMs` is only a ceiling for a run that is failing
 * anyway, never a claim about speed: on a loaded machine (CI, stress-ng) the things
 * tests wait for take many times longer, so it is at least a minute.
 */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 60_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + Math.max(timeoutMs, 60_000);
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
