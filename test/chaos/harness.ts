// Shared by the chaos and packaging suites: aleph-edge run as an operator runs it
// (the CLI in a child process, real ports), plus raw sockets and /proc figures.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { CLI } from '../helpers/paths.js';
import { toml, until, type TestNodeOptions } from '../helpers/node.js';
import { freePort } from '../helpers/ports.js';
export { freePort };


export interface CliNode {
  child: ChildProcess;
  dir: string;
  configFile: string;
  socket: string;
  httpsPort: number;
  httpPort: number;
  ca: string;
  domain: string;
  /** What the node wrote to stderr (the last 512 KiB to 1 MiB of it). */
  stderr(): string;
  /** Bytes the node wrote to stderr in total. */
  stderrBytes(): number;
  /** SIGTERM and wait for the exit code (SIGKILL after 15 s). */
  stop(): Promise<number | null>;
}

export interface CliNodeOptions extends TestNodeOptions {
  /** Extra lines appended to [server] (e.g. limits). */
  server?: string[];
  /** Reuse ports (restart after a crash). */
  ports?: { https: number; http: number };
  /** Replaces the command line (socket activation wrappers): gets the node's argv. */
  wrap?: (argv: string[]) => { command: string; args: string[] };
  env?: Record<string, string>;
  /** Do not wait for the status socket. */
  noWait?: boolean;
  /** The node's stderr is this file descriptor (a FIFO, say) instead of a pipe to the test; stderr() is then ''. */
  stderrFd?: number;
}

export async function writeNodeConfig(options: CliNodeOptions, dir: string, ports: { https: number; http: number }): Promise<string> {
  let text = toml(options, dir)
    .replace('127.0.0.1:8443', `127.0.0.1:${ports.https}`)
    .replace('127.0.0.1:8080', `127.0.0.1:${ports.http}`);
  if (options.server?.length) text = text.replace('[tls]\n', `${options.server.join('\n')}\n[tls]\n`);
  const file = path.join(dir, 'aleph-edge.toml');
  await writeFile(file, text);
  return file;
}

/** Starts `aleph-edge run` in a child process on fresh loopback ports. */
export async function startCliNode(options: CliNodeOptions): Promise<CliNode> {
  const dir = options.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-')));
  const ports = options.ports ?? { https: await freePort(), http: await freePort() };
  const configFile = await writeNodeConfig(options, dir, ports);
  const socket = path.join(dir, 'status.sock');
  const argv = [CLI, 'run', '--config', configFile];
  const { command, args } = options.wrap ? options.wrap(argv) : { command: process.execPath, args: argv };
  const spawnOptions: SpawnOptions = {
    env: { ...process.env, ALEPH_EDGE_LOG: process.env.ALEPH_EDGE_LOG ?? 'warn', ...options.env },
    stdio: ['ignore', 'ignore', options.stderrFd ?? 'pipe'],
  };
  const child = spawn(command, args, spawnOptions);
  let errText = '';
  let errBytes = 0;
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    errText += chunk;
    errBytes += Buffer.byteLength(chunk);
    if (errText.length > 1 << 20) errText = errText.slice(-(1 << 19));
    if (process.env.CHAOS_VERBOSE) process.stderr.write(chunk);
  });
  const node: CliNode = {
    child, dir, configFile, socket, httpsPort: ports.https, httpPort: ports.http, ca: '', domain: options.domain ?? 'edge.test',
    stderr: () => errText,
    stderrBytes: () => errBytes,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  if (!options.noWait) await waitReady(node);
  return node;
}

export async function waitReady(node: CliNode, timeoutMs = 15_000): Promise<void> {
  await until(() => {
    if (node.child.exitCode !== null) throw new Error(`aleph-edge exited with ${node.child.exitCode}: ${node.stderr()}`);
    return existsSync(node.socket);
  }, timeoutMs, 'the status socket');
  node.ca = await readFile(path.join(node.dir, 'certs/internal/ca.crt'), 'utf8');
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTPS request (fresh connection) through the node. */
export function get(node: CliNode, target: string, options: { host?: string; method?: string; headers?: Record<string, string>; timeoutMs?: number; body?: string; localAddress?: string } = {}): Promise<Reply> {
  const host = options.host ?? node.domain;
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: node.httpsPort, servername: host, ca: node.ca, method: options.method ?? 'GET',
      path: target, headers: { host, ...options.headers }, agent: false, timeout: options.timeoutMs ?? 10_000,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`request ${target} timed out`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * Writes raw bytes over TLS and returns what comes back until the server closes
 * (or `idleMs` without data). `closed` tells whether the server ended the connection.
 */
export function rawTls(node: CliNode, payload: string | Buffer, options: { servername?: string; idleMs?: number } = {}): Promise<{ text: string; closed: boolean; error?: string }> {
  return new Promise((resolve) => {
    let text = '';
    let done = false;
    const socket = tls.connect({ host: '127.0.0.1', port: node.httpsPort, servername: options.servername ?? node.domain, ca: node.ca });
    const finish = (closed: boolean, error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closed, error });
    };
    let timer = setTimeout(() => finish(false), options.idleMs ?? 3000);
    socket.setEncoding('latin1');
    socket.on('secureConnect', () => socket.write(payload));
    socket.on('data', (chunk: string) => {
      text += chunk;
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), options.idleMs ?? 3000);
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', (error) => finish(true, error.message));
  });
}

/** HTTP status codes of every response in a raw reply (pipelined requests give several). */
export function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
}

export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Socket inodes held by a process. */
export function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** TCP sockets in LISTEN state owned by `pid`, as 'addr:port' (from /proc/net/tcp{,6}). */
export function tcpListeners(pid: number): string[] {
  const inodes = socketInodes(pid);
  const found: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || fields[3] !== '0A') continue; // 0A = LISTEN
      if (!inodes.has(fields[9]!)) continue;
      const [addr, port] = fields[1]!.split(':');
      found.push(`${decodeAddress(addr!)}:${parseInt(port!, 16)}`);
    }
  }
  return found.sort();
}

function decodeAddress(hex: string): string {
  if (hex.length === 8) return Buffer.from(hex, 'hex').reverse().join('.');
  // IPv6: four little-endian 32-bit words.
  const words = hex.match(/.{8}/g)!.map((w) => Buffer.from(w, 'hex').reverse().toString('hex'));
  // The URL parser prints IPv6 literals in their canonical compressed form.
  return new URL(`http://[${words.join('').match(/.{4}/g)!.join(':')}]/`).hostname;
}

/** Live (non-zombie) processes whose command line or environment mentions `marker`. */
export function processesMatching(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1];
      if (state === 'Z') continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) found.push(Number(entry));
    } catch {
      // gone
    }
  }
  return found;
}

/** Live direct children of `pid` (from /proc/<pid>/stat). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const text = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

/** True while `pid` runs (a zombie, killed but not yet reaped by its new parent, is not running). */
export function running(pid: number): boolean {
  try {
    return !/^State:\s+[ZX]/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The guest-link listeners of the node's running executions, as `vms --json` reports
 * them: the only TCP listeners a node opens besides its configured addresses.
 */
export function guestLinks(socket: string): string[] {
  const vms = JSON.parse(execFileSync(process.execPath, [CLI, 'vms', '--socket', socket, '--json'], { encoding: 'utf8' })) as Array<{ guest_api: string }>;
  return vms.map((vm) => vm.guest_api).filter((address) => address !== '');
}
