// ACME faults: the directory down, answering 500, answering 429 with Retry-After,
// and kill -9 of an acme-mode node while it writes new certificates. A counting
// HTTPS proxy (Pebble's API certificate) sits between the node and Pebble, so every
// request that reaches the ACME side is seen and can be refused.
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { spawn } from 'node:child_process';
import { issuerNameFor } from '../../src/tls/acme-account.js';
import { StatusClient } from '../../src/status/index.js';
import { CLI } from '../helpers/paths.js';
import { until } from '../helpers/node.js';
import { FIXTURES, HELLO_HASH, handshake, httpsGet, startAcmeNode, usePebble, type AcmeNode, type Pebble, type TempDir } from '../tls/acme-harness.js';
import { running, sleep } from './harness.js';

type Mode = 'pass' | 'down' | '500' | '429';

interface AcmeProxy {
  directory: string;
  mode: Mode;
  retryAfterSeconds: number;
  /** Requests (HTTP) and TCP connections that reached the proxy since reset(). */
  requests: number;
  connections: number;
  /** Arrival times (ms) of requests and the starts of Retry-After windows, since reset(). */
  arrivals: number[];
  /** Method and path of each arrival (which ACME call it was). */
  calls: string[];
  /**
   * When the node sent each request, as far as the proxy can tell: for the first
   * request on a connection, when that connection was accepted (the client opens it
   * for that request; on a loaded machine its TLS handshake can take seconds); for a
   * later one on a kept-alive connection, its arrival.
   */
  sent: number[];
  refusals: number[];
  reset(): void;
  close(): Promise<void>;
}

/** HTTPS reverse proxy in front of Pebble's ACME API that counts and can fail everything. */
async function startProxy(pebble: Pebble): Promise<AcmeProxy> {
  const target = new URL(pebble.directory);
  const key = await readFile(path.join(pebble.dir, 'api.key'), 'utf8');
  const sockets = new Set<net.Socket>();
  let windowEnd = 0;
  const state: AcmeProxy = {
    directory: '', mode: 'pass', retryAfterSeconds: 3, requests: 0, connections: 0, arrivals: [], calls: [], sent: [], refusals: [],
    reset() {
      this.requests = 0;
      this.connections = 0;
      this.arrivals = [];
      this.calls = [];
      this.sent = [];
      this.refusals = [];
      windowEnd = 0;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  const server = https.createServer({ cert: pebble.apiCert, key }, (req, res) => {
    state.requests++;
    state.arrivals.push(performance.now());
    state.calls.push(`${req.method} ${req.url}`);
    const socket = req.socket as net.Socket & { acceptedAt?: number; served?: number };
    state.sent.push(socket.served ? performance.now() : socket.acceptedAt ?? performance.now());
    socket.served = (socket.served ?? 0) + 1;
    const problem = (status: number, headers: Record<string, string> = {}) => {
      req.resume();
      res.writeHead(status, { 'content-type': 'application/problem+json', ...headers });
      res.end(JSON.stringify({ type: status === 429 ? 'urn:ietf:params:acme:error:rateLimited' : 'urn:ietf:params:acme:error:serverInternal', detail: `proxy says ${status}` }));
    };
    if (state.mode === 'down') return req.socket.destroy(); // a kept-alive connection from before
    if (state.mode === '500') return problem(500);
    if (state.mode === '429') {
      // One Retry-After window for everyone: every 429 inside it names its end.
      const now = performance.now();
      if (now >= windowEnd) {
        windowEnd = now + state.retryAfterSeconds * 1000;
        state.refusals.push(now);
      }
      return problem(429, { 'retry-after': String(Math.ceil((windowEnd - now) / 1000)) });
    }
    // Host is kept, so Pebble builds its URLs (and checks the JWS url) against the proxy.
    const upstream = https.request({
      host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, ca: pebble.apiCert, servername: 'localhost', agent: false,
    }, (answer) => {
      res.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (socket: net.Socket & { acceptedAt?: number }) => {
    socket.acceptedAt = performance.now();
    state.connections++;
    if (state.mode === 'down') {
      socket.destroy(); // a directory that is not there: reset on connect
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.directory = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}/dir`;
  return state;
}

describe('ACME faults', () => {
  let pebble: Pebble;
  let root: string;
  let work: TempDir;
  usePebble('aleph-edge-chaos-acme-', {}, (env) => ({ pebble, root, work } = env));

  /**
   * A node behind a fresh proxy with certificates for `existing` already issued, then
   * the proxy switched to `mode`; 100 handshakes for 10 new hosts (10 rounds over 10 s).
   */
  async function directoryFault(mode: Exclude<Mode, 'pass'>) {
    const proxy = await startProxy(pebble);
    const existing = ['app1.old.test', 'app2.old.test'];
    const fresh = Array.from({ length: 10 }, (_, i) => `app${i}.new-${mode}.test`);
    const storage = path.join(work.dir, `${mode}-certs`);
    let node: AcmeNode | undefined;
    try {
      node = await startAcmeNode({
        pebble: { ...pebble, directory: proxy.directory }, dir: work.dir, storage, hosts: [...existing, ...fresh],
        // A generous issue_rate: the per-host backoff (and Retry-After) must hold the line, not the bucket.
        tls: ['issue_rate = { burst = 100, interval = "60s" }'],
        issueWaitMs: 1500,
      });
      // Set-up, not the measure: on a loaded machine an order can outlast issueWaitMs, when
      // that handshake fails and the order goes on; the next handshake gets its certificate.
      for (const host of existing) await until(async () => (await handshake(node!.httpsPort, host, root)).ok, 60_000, `the certificate of ${host}`);
      for (const host of existing) assert.equal((await httpsGet(node.httpsPort, host, root)).status, 200);
      const fingerprints = new Map<string, string>();
      for (const host of existing) {
        const r = await handshake(node.httpsPort, host, root);
        assert.ok(r.ok);
        fingerprints.set(host, r.cert.fingerprint256);
      }
      proxy.mode = mode;
      proxy.reset();
      const started = performance.now();
      let existingOk = 0;
      let existingFailed = 0;
      let newOk = 0;
      let newFailed = 0;
      let slowestNew = 0;
      for (let round = 0; round < 10; round++) {
        const roundStart = performance.now();
        const results = await Promise.all([
          ...fresh.map(async (host) => {
            const t0 = performance.now();
            const r = await handshake(node!.httpsPort, host, root);
            slowestNew = Math.max(slowestNew, performance.now() - t0);
            return r;
          }),
          ...existing.map((host) => handshake(node!.httpsPort, host, root)),
        ]);
        for (const [i, r] of results.entries()) {
          if (i < fresh.length) r.ok ? newOk++ : newFailed++;
          else if (r.ok && r.cert.fingerprint256 === fingerprints.get(existing[i - fresh.length]!)) existingOk++;
          else existingFailed++;
        }
        await sleep(Math.max(0, 1000 - (performance.now() - roundStart)));
      }
      const seconds = (performance.now() - started) / 1000;
      // Early requests: one sent inside a Retry-After window (every 429 in it names
      // the window's end, rounded up to whole seconds), 1 s after its start or later
      // (requests already on the wire when the first 429 left are not retries), except
      // in the second after the previous window's end (retries told the rounded-up value).
      // Judged by when it was sent, not when it arrived: a connection opened before the
      // window whose handshake took seconds under load brings a request decided before it.
      let early = 0;
      if (mode === '429') {
        const windowMs = proxy.retryAfterSeconds * 1000;
        for (const t of proxy.sent) {
          let k = -1;
          while (k + 1 < proxy.refusals.length && proxy.refusals[k + 1]! <= t) k++;
          if (k < 0) continue;
          const start = proxy.refusals[k]!;
          const previousEnd = k > 0 ? proxy.refusals[k - 1]! + windowMs : -Infinity;
          if (t > start + 1000 && t < start + windowMs - 50 && t > previousEnd + 1250) early++;
        }
      }
      const alive = (await httpsGet(node.httpsPort, existing[0]!, root)).status;
      process.stdout.write(`# acme ${mode}: ${seconds.toFixed(1)} s, existing certs served ${existingOk}/${existingOk + existingFailed} (verified, same cert); ` +
        `new hosts: ${newFailed}/${newOk + newFailed} handshakes failed cleanly (slowest ${Math.round(slowestNew)} ms); ` +
        `reaching the ACME side: ${proxy.requests} requests, ${proxy.connections} connections for 100 new-host handshakes` +
        `${mode === '429' ? `; requests before Retry-After (${proxy.retryAfterSeconds} s): ${early}` : ''}\n`);
      assert.equal(existingFailed, 0, 'existing certificates keep being served');
      assert.equal(newOk, 0);
      assert.equal(newFailed, 100);
      assert.ok(slowestNew < 5000, `a new-host handshake took ${slowestNew} ms`);
      assert.equal(alive, 200);
      // 10 hosts: a first order each plus a few retries after the backoff (2 s, doubling).
      const bound = 60;
      assert.ok(proxy.requests <= bound, `${proxy.requests} requests reached the ACME side (bound ${bound})`);
      assert.ok(proxy.connections <= bound, `${proxy.connections} connections reached the ACME side (bound ${bound})`);
      if (mode === '429') assert.equal(early, 0, `a request came before Retry-After: arrivals ${proxy.arrivals.map((t, i) => `${Math.round(t - started)} ms (sent ${Math.round(proxy.sent[i]! - started)}) ${proxy.calls[i]}`).join(', ')}, windows from ${proxy.refusals.map((t) => Math.round(t - started))} ms`);
    } finally {
      await node?.close();
      await proxy.close();
    }
  }

  it('directory down: existing certs served, new hosts fail cleanly, no order storm', () => directoryFault('down'));
  it('directory answering 500: existing certs served, new hosts fail cleanly, no order storm', () => directoryFault('500'));
  it('directory answering 429 + Retry-After: no retry before Retry-After, no order storm', () => directoryFault('429'));

  it('kill -9 of an acme-mode node during certificate writes: no corrupt cert served, no orphan, status socket usable', async () => {
    const dir = path.join(work.dir, 'kill9');
    await mkdir(dir, { recursive: true });
    const storage = path.join(dir, 'certs');
    const socketPath = path.join(dir, 'status.sock');
    const hosts = Array.from({ length: 40 }, (_, i) => `app${i}.kill.test`);
    const lines = [
      '[server]', 'domain = "edge.test"',
      `https_listen = ["127.0.0.1:${pebble.tlsPort}"]`, `http_listen = ["127.0.0.1:${pebble.httpPort}"]`,
      `status_socket = "${socketPath}"`, 'drain_timeout = "2s"',
      '[tls]', 'mode = "acme"', `storage = "${storage}"`, 'email = "ops@edge.test"',
      `directory = "${pebble.directory}"`, `directory_ca = "${pebble.apiCertPath}"`, 'challenges = ["tls-alpn-01", "http-01"]',
      'issue_rate = { burst = 200, interval = "60s" }',
      '[routing]', `dns_servers = ["127.0.0.1:${pebble.dnsPort}"]`,
      '[orchestrator]', 'driver = "process"', 'stop_grace = "1s"',
      '[[programs.local]]', 'name = "hello"', `hash = "${HELLO_HASH}"`,
      `command = [${JSON.stringify(process.execPath)}, ${JSON.stringify(path.join(FIXTURES, 'hello.js'))}]`, 'memory_mib = 32',
    ];
    for (const host of hosts) lines.push('[[routes]]', `host = "${host}"`, `program = "${HELLO_HASH}"`);
    const configFile = path.join(dir, 'aleph-edge.toml');
    await writeFile(configFile, lines.join('\n') + '\n');
    const startNode = async () => {
      const child = spawn(process.execPath, [CLI, 'run', '--config', configFile], {
        env: { ...process.env, ALEPH_EDGE_LOG: process.env.ALEPH_EDGE_LOG ?? 'warn' }, stdio: ['ignore', 'ignore', 'pipe'],
      });
      let errText = '';
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (c: string) => (errText = (errText + c).slice(-100_000)));
      const status = new StatusClient(socketPath, 5_000);
      await until(async () => {
        if (child.exitCode !== null) throw new Error(`aleph-edge exited with ${child.exitCode}: ${errText}`);
        try {
          return (await status.status()).version !== undefined;
        } catch {
          return false;
        }
      }, 15_000, 'the status socket');
      return { child, status, stderr: () => errText };
    };
    const hostDir = (host: string) => path.join(storage, issuerNameFor(pebble.directory), host);

    let node = await startNode();
    try {
      // A program running (to be orphaned by the kill), then orders for all hosts at once.
      assert.equal((await httpsGet(pebble.tlsPort, hosts[0]!, root)).status, 200);
      const programPids = (await node.status.vms()).map((v) => v.pid!).filter(Boolean);
      assert.equal(programPids.length, 1);
      const inFlight = hosts.slice(1).map((host) => handshake(pebble.tlsPort, host, root));
      // Kill once some certificates are written and others are still being ordered.
      const deadline = Date.now() + 30_000;
      while (hosts.slice(1).filter((h) => existsSync(path.join(hostDir(h), 'cert.pem'))).length < 3) {
        if (Date.now() > deadline) throw new Error(`no certificate written in 30 s; the node's stderr (tail):\n${node.stderr().slice(-20_000)}`);
        await sleep(5);
      }
      const firstWritesAfter = (30_000 - (deadline - Date.now())) / 1000;
      const killedPid = node.child.pid!;
      node.child.kill('SIGKILL');
      await new Promise((r) => node.child.once('exit', r));
      const writtenAtKill = hosts.filter((h) => existsSync(path.join(hostDir(h), 'cert.pem'))).length;
      await Promise.all(inFlight);
      const orphansAfterKill = programPids.filter(running).length;

      const restartAt = performance.now();
      node = await startNode();
      const readyAfter = (performance.now() - restartAt) / 1000;
      await until(() => programPids.every((pid) => !running(pid)), 5000, 'the previous node\'s program to be killed');

      // Every stored pair either is intact and served as-is (verified against Pebble's
      // root), or is broken and never served (a fresh, verified cert instead).
      let intact = 0;
      let broken = 0;
      let reissued = 0;
      // The restarted node removes them in the background at start-up.
      const killedTemps = async () => {
        let count = 0;
        for (const host of hosts) {
          if (existsSync(hostDir(host))) count += (await readdir(hostDir(host))).filter((f) => f.endsWith('.tmp') && f.includes(`.${killedPid}.`)).length;
        }
        return count;
      };
      const tempsAtRestart = await killedTemps();
      await until(async () => (await killedTemps()) === 0, 5000, 'the temp files of the killed node to be removed');
      let temps = 0;
      for (const host of hosts) {
        const folder = hostDir(host);
        if (!existsSync(folder)) continue;
        temps += (await readdir(folder)).filter((f) => f.endsWith('.tmp') && f.includes(`.${killedPid}.`)).length;
        let fingerprint: string | undefined;
        try {
          const cert = new X509Certificate(await readFile(path.join(folder, 'cert.pem')));
          if (cert.checkPrivateKey(createPrivateKey(await readFile(path.join(folder, 'key.pem')))) && cert.checkHost(host)) fingerprint = cert.fingerprint256;
        } catch {
          // missing or half-written
        }
        if (!fingerprint && !existsSync(path.join(folder, 'cert.pem'))) continue; // never written: nothing to check
        const served = await handshake(pebble.tlsPort, host, root);
        assert.ok(served.ok, `${host}: ${served.ok ? '' : served.error.message}`);
        if (fingerprint) {
          intact++;
          assert.equal(served.cert.fingerprint256, fingerprint, `${host}: the stored certificate is served`);
        } else {
          broken++;
          reissued++;
        }
      }
      // Served certificates match their key: a full request works for a restored host.
      const restored = hosts.find((h) => existsSync(path.join(hostDir(h), 'cert.pem')))!;
      assert.equal((await httpsGet(pebble.tlsPort, restored, root)).status, 200);
      const vms = await node.status.vms();
      assert.ok(vms.every((v) => !programPids.includes(v.pid!)));
      process.stdout.write(`# acme kill -9: ${hosts.length - 1} new hosts ordering, 3 cert.pem written after ${firstWritesAfter.toFixed(1)} s, ${writtenAtKill} at the kill; program alive after kill ${orphansAfterKill}/${programPids.length}, killed after restart; ` +
        `restarted in ${readyAfter.toFixed(1)} s, status socket answers; stored pairs intact ${intact} (served as stored, verified), broken ${broken} (never served, ${reissued} re-ordered and verified), leftover temp files ${temps} (${tempsAtRestart} when the status socket answered)\n`);
      assert.equal(intact + broken >= writtenAtKill, true);
      assert.equal(temps, 0, 'temp files of the killed node removed at start-up');
    } finally {
      if (node.child.exitCode === null && node.child.signalCode === null) {
        const exited = new Promise((r) => node.child.once('exit', r));
        node.child.kill('SIGTERM');
        const timer = setTimeout(() => node.child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
    }
  });
});
