// A real ACME server for the tests: Pebble + pebble-challtestsrv (Debian package
// `pebble`) on free loopback ports, torn down by stop(). Pebble validates HTTP-01 on
// httpPort and TLS-ALPN-01 on tlsPort (the node under test listens there), resolves
// every name through challtestsrv's DNS (127.0.0.1 for any A query, TXT records set
// through its management API), and counts its orders in its log ("Added order").

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, webcrypto } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { after, before } from 'node:test';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { AlephEdgeNode } from '../../src/app/index.js';
import { setLogLevel } from '../../src/common/log.js';
import { loadConfig } from '../../src/config/index.js';
import { freePort } from '../helpers/ports.js';
export { freePort };

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

export const FIXTURES = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../test/fixtures/acme');


export interface Pebble {
  dir: string;
  directory: string;
  /** Pebble's API certificate (tls.directory_ca). */
  apiCertPath: string;
  apiCert: string;
  httpPort: number;
  tlsPort: number;
  dnsPort: number;
  challtestsrv: string; // host:port of its management API
  /** Pebble's root (management API), for clients verifying issued chains. */
  root(): Promise<string>;
  /** Orders Pebble accepted so far. */
  orders(): number;
  log(): string;
  stop(): Promise<void>;
}

export interface PebbleOptions {
  /** certificateValidityPeriod in seconds (Pebble's default: 5 years). */
  validitySeconds?: number;
  /** Put this OCSP responder URL in issued certificates (Pebble runs no responder itself). */
  ocspResponderUrl?: string;
  /** Require external account binding with these kid -> HMAC key pairs. */
  eab?: Record<string, string>;
}

async function selfSigned(): Promise<{ cert: string; key: string }> {
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=pebble test api',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 24 * 3600_000),
    keys: keys as never,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }, { type: 'dns', value: 'localhost' }]),
    ],
  }, webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1]);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString('pem'), key };
}

function get(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https.get(url, { ca, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    }).on('error', reject);
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let ok = false;
    try {
      ok = await check();
    } catch (err) {
      if (/exited/.test((err as Error).message)) throw err;
    }
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts Pebble + challtestsrv; a port taken meanwhile by someone else means another try on new ports. */
export async function startPebble(options: PebbleOptions = {}): Promise<Pebble> {
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startPebbleOnce(options);
    } catch (err) {
      lastError = err as Error;
    }
  }
  throw lastError!;
}

async function startPebbleOnce(options: PebbleOptions): Promise<Pebble> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-pebble-'));
  const [apiPort, mgmtPort, httpPort, tlsPort, dnsPort, challPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  const { cert, key } = await selfSigned();
  const apiCertPath = path.join(dir, 'api.crt');
  await writeFile(apiCertPath, cert);
  await writeFile(path.join(dir, 'api.key'), key);
  const config = {
    pebble: {
      listenAddress: `127.0.0.1:${apiPort}`,
      managementListenAddress: `127.0.0.1:${mgmtPort}`,
      certificate: apiCertPath,
      privateKey: path.join(dir, 'api.key'),
      httpPort,
      tlsPort,
      ocspResponderURL: options.ocspResponderUrl ?? '',
      externalAccountBindingRequired: options.eab !== undefined,
      ...(options.eab ? { externalAccountMACKeys: options.eab } : {}),
      ...(options.validitySeconds ? { certificateValidityPeriod: options.validitySeconds } : {}),
    },
  };
  await writeFile(path.join(dir, 'pebble.json'), JSON.stringify(config));
  const children: ChildProcess[] = [];
  let pebbleLog = '';
  const chall = spawn('pebble-challtestsrv', [
    '-dns01', `127.0.0.1:${dnsPort}`, '-management', `127.0.0.1:${challPort}`,
    '-http01', '', '-https01', '', '-tlsalpn01', '', '-defaultIPv6', '',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(chall);
  chall.stdout!.on('data', (c: Buffer) => (pebbleLog += c.toString()));
  chall.stderr!.on('data', (c: Buffer) => (pebbleLog += c.toString()));
  const pebble = spawn('pebble', ['-config', path.join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
  });
  children.push(pebble);
  pebble.stdout!.on('data', (c: Buffer) => (pebbleLog += c.toString()));
  pebble.stderr!.on('data', (c: Buffer) => (pebbleLog += c.toString()));
  // A test process that exits without after() (a crash, a timeout) takes them along.
  const killAll = () => children.forEach((child) => child.kill('SIGKILL'));
  process.once('exit', killAll);
  const stop = async () => {
    process.off('exit', killAll);
    await Promise.all(children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    })));
    await rm(dir, { recursive: true, force: true });
  };
  const directory = `https://127.0.0.1:${apiPort}/dir`;
  const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;
  try {
    await waitFor('pebble', async () => {
      if (exited(pebble) || exited(chall)) throw new Error('pebble or pebble-challtestsrv exited');
      return (await get(directory, cert)).status === 200;
    });
    await waitFor('pebble-challtestsrv', async () => (await fetch(`http://127.0.0.1:${challPort}/clear-txt`, { method: 'POST', body: '{"host":"warmup."}' })).ok);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${pebbleLog}`);
  }
  return {
    dir, directory, apiCertPath, apiCert: cert, httpPort, tlsPort, dnsPort,
    challtestsrv: `127.0.0.1:${challPort}`,
    root: async () => (await get(`https://127.0.0.1:${mgmtPort}/roots/0`, cert)).body,
    orders: () => (pebbleLog.match(/Added order/g) ?? []).length,
    log: () => pebbleLog,
    stop,
  };
}

/** One TLS handshake: the peer certificate chain, or the error. */
export function handshake(port: number, servername: string, ca?: string, alpn = ['http/1.1']): Promise<{ ok: true; cert: tls.PeerCertificate } | { ok: false; error: Error }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ca, rejectUnauthorized: ca !== undefined, ALPNProtocols: alpn }, () => {
      const cert = socket.getPeerCertificate(true);
      socket.end();
      resolve({ ok: true, cert });
    });
    socket.setTimeout(15_000, () => socket.destroy(new Error('handshake timed out')));
    socket.once('error', (error) => resolve({ ok: false, error }));
  });
}

/** GET over HTTPS verified against ca, Host and SNI set to host. */
export function httpsGet(port: number, host: string, ca: string, urlPath = '/'): Promise<{ status: number; body: string; cert: tls.PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, servername: host, headers: { host }, path: urlPath, ca, agent: false }, (res) => {
      let body = '';
      const cert = (res.socket as tls.TLSSocket).getPeerCertificate(true);
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, cert }));
    });
    req.on('error', reject);
    req.end();
  });
}

// ---- aleph-edge nodes in acme mode against that Pebble ----

export const HELLO_HASH = createHash('sha256').update('acme test program hello').digest('hex');
export const DOMAIN = 'edge.test';

export interface AcmeNodeOptions {
  pebble: Pebble;
  /** Storage folder (shared between nodes in some tests). */
  storage: string;
  /** Work folder for the config and status socket. */
  dir: string;
  challenges?: string[];
  /** Hosts routed to the hello program by [[routes]]. */
  hosts?: string[];
  /** Extra [tls] lines. */
  tls?: string[];
  /** Listen on Pebble's validation ports (default true; false for a node behind a fan-out). */
  validationPorts?: boolean;
  /** No :80 listener (HTTP-01 cannot succeed). */
  noHttp?: boolean;
  renewalIntervalMs?: number;
  issueWaitMs?: number;
  /** server.workers (default 1). */
  workers?: number;
}

export interface AcmeNode {
  node: AlephEdgeNode;
  /** GET on the status socket, parsed JSON. */
  status(path: string): Promise<unknown>;
  httpsPort: number;
  httpPort: number;
  close(): Promise<void>;
}

let nodeCount = 0;

export async function startAcmeNode(options: AcmeNodeOptions): Promise<AcmeNode> {
  const { pebble } = options;
  const id = ++nodeCount;
  const validation = options.validationPorts ?? true;
  const [httpsPort, httpPort] = validation ? [pebble.tlsPort, pebble.httpPort] : [await freePort(), await freePort()];
  const lines = [
    '[server]',
    `domain = "${DOMAIN}"`,
    `https_listen = ["127.0.0.1:${httpsPort}"]`,
    options.noHttp ? 'http_listen = []' : `http_listen = ["127.0.0.1:${httpPort}"]`,
    // One state directory per node (its lock, its program records), even when nodes share `dir`.
    `status_socket = "${path.join(options.dir, `node-${id}`, 'status.sock')}"`,
    'drain_timeout = "2s"',
    `workers = ${options.workers ?? 1}`,
    '[tls]',
    'mode = "acme"',
    `storage = "${options.storage}"`,
    'email = "ops@edge.test"',
    `directory = "${pebble.directory}"`,
    `directory_ca = "${pebble.apiCertPath}"`,
    `challenges = ${JSON.stringify(options.challenges ?? ['tls-alpn-01', 'http-01'])}`,
    ...(options.tls ?? []),
    '[routing]',
    `dns_servers = ["127.0.0.1:${pebble.dnsPort}"]`,
    '[orchestrator]',
    'driver = "process"',
    'stop_grace = "1s"',
    '[[programs.local]]',
    'name = "hello"',
    `hash = "${HELLO_HASH}"`,
    `command = [${JSON.stringify(process.execPath)}, ${JSON.stringify(path.join(FIXTURES, 'hello.js'))}]`,
    'memory_mib = 32',
  ];
  for (const host of options.hosts ?? []) lines.push('[[routes]]', `host = "${host}"`, `program = "${HELLO_HASH}"`);
  const configFile = path.join(options.dir, `aleph-edge-${id}.toml`);
  await writeFile(configFile, lines.join('\n') + '\n');
  const settings = await loadConfig(configFile);
  const node = await AlephEdgeNode.start(settings, {
    version: 'test',
    inherited: [],
    acme: {
      backoff: { attempts: 40, minMs: 20, maxMs: 250 },
      renewalIntervalMs: options.renewalIntervalMs ?? 60_000,
      issueWaitMs: options.issueWaitMs ?? 15_000,
      failureBackoff: { initialMs: 2_000, maxMs: 10_000 },
      dnsHookTimeoutMs: 10_000,
      httpRetry: { attempts: 2, delaySeconds: 0 },
    },
  });
  const socketPath = path.join(options.dir, `node-${id}`, 'status.sock');
  return {
    node,
    status: (urlPath) => new Promise((resolve, reject) => {
      http.get({ socketPath, path: urlPath }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(JSON.parse(body)));
      }).on('error', reject);
    }),
    httpsPort: node.port('https')!,
    httpPort: node.port('http') ?? 0,
    close: () => node.drain(),
  };
}

export interface TempDir {
  dir: string;
  cleanup: () => Promise<void>;
}

/**
 * For a describe block: a Pebble and a temp folder started before its tests and
 * removed after them; `use` receives them once they are up.
 */
export function usePebble(prefix: string, options: PebbleOptions, use: (env: { pebble: Pebble; root: string; work: TempDir }) => void): void {
  let pebble: Pebble | undefined;
  let work: TempDir | undefined;
  before(async () => {
    pebble = await startPebble(options);
    work = await tempDir(prefix);
    use({ pebble, root: await pebble.root(), work });
  });
  after(async () => {
    await pebble?.stop();
    await work?.cleanup();
  });
}

export async function tempDir(prefix: string): Promise<TempDir> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
