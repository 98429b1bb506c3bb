// Issue 14 case 1: connections that never finish a TLS handshake. A thousand silent
// TCP sockets and a hundred half ClientHellos against a node with workers; pass: the
// node destroys them by server.limits.handshake_timeout (fds back to baseline), refuses
// those over the per-address cap at once, serves another client throughout, and a
// drain does not wait for handshakes.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { CLI, example } from '../helpers/paths.js';
import { programHash } from '../helpers/node.js';
import { childrenOf, get, openFds, processesMatching, sleep, startCliNode, type CliNode } from './harness.js';

const SILENT = 1000;
const HALF_HELLOS = 100;
const TIMEOUT_S = 2;
const PER_ADDRESS = 300; // per worker: of the 1100, some are refused at accept

// A TLS record header announcing a 512-byte ClientHello, followed by only its start.
const HALF_HELLO = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), Buffer.alloc(40, 7)]);

function open(port: number, payload?: Buffer): Promise<net.Socket> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    socket.resume();
    socket.once('connect', () => {
      if (payload) socket.write(payload);
      resolve(socket);
    });
    socket.once('close', () => resolve(socket));
  });
}

describe('unfinished TLS handshakes', () => {
  let node: CliNode;
  let workers: number[];
  const counter = programHash('counter');

  before(async () => {
    node = await startCliNode({
      workers: 2,
      programs: [{ name: 'counter', script: example('counter') }],
      server: ['[server.limits]', `handshake_timeout = "${TIMEOUT_S}s"`, `max_handshakes_per_address = ${PER_ADDRESS}`, "max_handshakes = 5000"],
    });
    workers = childrenOf(node.child.pid!).filter((pid) => processesMatching(CLI).includes(pid));
    assert.equal(workers.length, 2);
    // Warm both workers' connections to the program, then take the baseline.
    for (let i = 0; i < 6; i++) assert.equal((await get(node, `/vm/${counter}/state/increment`)).status, 200);
    await sleep(300);
  });

  after(async () => {
    if (node.child.exitCode === null) await node.stop();
  });

  it(`${SILENT} silent sockets and ${HALF_HELLOS} half ClientHellos are destroyed by handshake_timeout; others are served`, async () => {
    const fds = () => workers.reduce((sum, pid) => sum + openFds(pid), 0);
    const baseline = fds();
    const sockets: net.Socket[] = [];
    const closedAt = new Map<net.Socket, number>();
    const started = performance.now();
    for (let i = 0; i < SILENT; i += 100) {
      sockets.push(...await Promise.all(Array.from({ length: 100 }, () => open(node.httpsPort))));
    }
    sockets.push(...await Promise.all(Array.from({ length: HALF_HELLOS }, () => open(node.httpsPort, HALF_HELLO))));
    for (const socket of sockets) {
      if (socket.destroyed) closedAt.set(socket, 0);
      else socket.once('close', () => closedAt.set(socket, (performance.now() - started) / 1000));
    }
    await sleep(200);
    const refusedAtOnce = closedAt.size + sockets.filter((s) => !closedAt.has(s) && s.readableEnded).length;
    const peak = fds();

    // Another client (another source address: the cap is per address) is served meanwhile.
    const codes = new Map<number | string, number>();
    // Generous: the node closes each socket when its handshake_timeout fires, but a loaded
    // machine runs those timers late (seen: the last close 8 s after a 2 s timeout). Nothing
    // but the node closes these sockets, so every close still proves the timeout.
    const deadline = performance.now() + (TIMEOUT_S + 30) * 1000;
    let back = false;
    while (performance.now() < deadline) {
      let key: number | string;
      try {
        key = (await get(node, `/vm/${counter}/state/increment`, { timeoutMs: 5000, localAddress: '127.0.0.2' })).status;
      } catch (error) {
        key = (error as Error).message;
      }
      codes.set(key, (codes.get(key) ?? 0) + 1);
      if (fds() <= baseline && closedAt.size === sockets.length) {
        back = true;
        break;
      }
      await sleep(50);
    }
    const after = fds();
    const last = Math.max(...closedAt.values());
    process.stdout.write(`# handshakes: ${SILENT} silent + ${HALF_HELLOS} half hellos, worker fds ${baseline} -> ${peak} -> ${after}; ` +
      `closed by the node ${closedAt.size}/${sockets.length} (${refusedAtOnce} at once), last after ${last.toFixed(1)} s (timeout ${TIMEOUT_S} s); ` +
      `other client: ${JSON.stringify(Object.fromEntries(codes))}\n`);
    for (const socket of sockets) socket.destroy();
    assert.ok(refusedAtOnce > 0, 'connections over the per-address cap are refused at once');
    assert.equal(closedAt.size, sockets.length, 'every unfinished handshake was closed by the node');
    assert.ok(back, `worker fds back to ${baseline} within ${TIMEOUT_S + 30} s (now ${after})`);
    assert.deepEqual([...codes.keys()], [200]);
  });

  it('a finished handshake is not cut by handshake_timeout (h1 keep-alive and h2)', async () => {
    const socket = tls.connect({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, ALPNProtocols: ['http/1.1'] });
    await new Promise<void>((resolve, reject) => { socket.once('secureConnect', () => resolve()); socket.once('error', reject); });
    const session = http2.connect(`https://127.0.0.1:${node.httpsPort}`, { ca: node.ca, servername: node.domain });
    session.on('error', () => undefined);
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
    await sleep((TIMEOUT_S + 0.5) * 1000);
    assert.equal(socket.destroyed, false, 'the h1 connection is still open');
    socket.write(`GET /about HTTP/1.1\r\nHost: ${node.domain}\r\nConnection: close\r\n\r\n`);
    let text = '';
    socket.setEncoding('latin1').on('data', (c: string) => { text += c; });
    await new Promise((resolve) => socket.once('close', resolve));
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.equal(session.destroyed, false, 'the h2 connection is still open');
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ':path': '/about', ':authority': node.domain });
      stream.on('response', (h) => resolve(Number(h[':status'])));
      stream.on('error', reject);
      stream.resume();
    });
    session.destroy();
    assert.equal(status, 200);
  });

  it('a drain does not wait for unfinished handshakes', { timeout: 120_000 }, async () => {
    await node.stop();
    // Its own node, whose handshake timeout (10 min) is far beyond any stop: a drain that
    // waited for the handshakes would never end before the test's timeout, one that does
    // not ends however loaded the machine is.
    const LONG_S = 600;
    const draining = await startCliNode({
      workers: 2,
      programs: [],
      server: ['[server.limits]', `handshake_timeout = "${LONG_S}s"`],
    });
    const sockets = await Promise.all(Array.from({ length: 50 }, () => open(draining.httpsPort)));
    const t0 = performance.now();
    assert.equal(await draining.stop(), 0);
    const took = (performance.now() - t0) / 1000;
    assert.ok(sockets.every((s) => s.destroyed || s.readableEnded), 'the node closed them');
    process.stdout.write(`# drain with 50 unfinished handshakes: ${took.toFixed(1)} s (handshake timeout ${LONG_S} s)\n`);
  });
});
