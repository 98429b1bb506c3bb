// Slowloris: hundreds of TLS connections sending their request head one byte at a
// time, plus TCP connections that never start a TLS handshake. Pass: normal requests
// keep being served (all 200, bounded latency), and the node cuts the slow
// connections once server.limits.headers_timeout has passed.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { example } from '../helpers/paths.js';
import { programHash } from '../helpers/node.js';
import { get, openFds, rssMiB, sleep, startCliNode, type CliNode } from './harness.js';

const SLOW_TLS = Number(process.env.CHAOS_SLOWLORIS_CONNECTIONS ?? 300);
const SLOW_TCP = 100;
const HEADERS_TIMEOUT_S = 2;

describe('slowloris', () => {
  let node: CliNode;
  const counter = programHash('counter');

  before(async () => {
    node = await startCliNode({
      programs: [{ name: 'counter', script: example('counter') }],
      server: ['[server.limits]', `headers_timeout = "${HEADERS_TIMEOUT_S}s"`],
    });
    assert.equal((await get(node, `/vm/${counter}/state/increment`)).status, 200); // warm
  });

  after(async () => {
    assert.equal(await node.stop(), 0);
  });

  it(`${SLOW_TLS} byte-by-byte TLS clients and ${SLOW_TCP} silent TCP clients do not stop normal requests`, async () => {
    const pid = node.child.pid!;
    const fdsBefore = openFds(pid);
    const cutAfter: number[] = [];
    const sockets: net.Socket[] = [];
    const head = `GET /vm/${counter}/state HTTP/1.1\r\nHost: ${node.domain}\r\nX-Slow: ${'s'.repeat(4000)}\r\n\r\n`;
    let stopDripping = false;
    // Open the slow TLS connections (in batches: the handshakes are real work).
    for (let i = 0; i < SLOW_TLS; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, SLOW_TLS - i) }, () => new Promise<void>((resolve) => {
        const socket = tls.connect({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca });
        sockets.push(socket);
        socket.on('error', () => undefined);
        socket.resume(); // read the node's 408 and its close
        // How long after its handshake the node cut it: opening 300 TLS connections on a
        // loaded machine takes seconds, which must not count.
        let connectedAt = Number.NaN;
        socket.once('close', () => cutAfter.push((performance.now() - connectedAt) / 1000));
        socket.once('secureConnect', () => {
          connectedAt = performance.now();
          resolve();
          let offset = 0;
          const drip = () => {
            if (stopDripping || socket.destroyed || offset >= head.length) return;
            socket.write(head[offset++]!);
            setTimeout(drip, 100);
          };
          drip();
        });
        socket.once('error', () => resolve());
      })));
    }
    for (let i = 0; i < SLOW_TCP; i++) {
      const socket = net.connect(node.httpsPort, '127.0.0.1');
      socket.on('error', () => undefined);
      sockets.push(socket);
    }
    await sleep(300);
    const peakFds = openFds(pid);
    // Normal traffic while the slow clients hold their connections.
    const latencies: number[] = [];
    const codes = new Map<number | string, number>();
    const until = performance.now() + (HEADERS_TIMEOUT_S + 1.5) * 1000;
    while (performance.now() < until) {
      const t0 = performance.now();
      let key: number | string;
      try {
        // From another address: unfinished handshakes are capped per address, so the slow
        // clients' own address is refused once they hold max_handshakes_per_address.
        key = (await get(node, `/vm/${counter}/state/increment`, { timeoutMs: 5000, localAddress: '127.0.0.2' })).status;
      } catch (error) {
        key = (error as Error).message;
      }
      latencies.push(performance.now() - t0);
      codes.set(key, (codes.get(key) ?? 0) + 1);
      await sleep(20);
    }
    // Wait for the node to cut the slow TLS clients (headers_timeout). A ceiling for a
    // run that fails anyway, not a claim about speed.
    const deadline = performance.now() + 60_000;
    while (cutAfter.length < SLOW_TLS && performance.now() < deadline) await sleep(100);
    stopDripping = true;
    for (const socket of sockets) socket.destroy();
    latencies.sort((a, b) => a - b);
    const p = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!.toFixed(0);
    const cut = [...cutAfter].sort((a, b) => a - b);
    await sleep(500);
    process.stdout.write(`# slowloris: ${SLOW_TLS} TLS + ${SLOW_TCP} TCP slow clients, fds ${fdsBefore} -> ${peakFds} -> ${openFds(pid)}; ` +
      `normal requests ${latencies.length}: ${JSON.stringify(Object.fromEntries(codes))}, p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${latencies.at(-1)!.toFixed(0)} ms; ` +
      `slow TLS clients cut by the node: ${cut.length}/${SLOW_TLS}, ${cut[0]?.toFixed(1)}-${cut.at(-1)?.toFixed(1)} s after their handshake (headers_timeout ${HEADERS_TIMEOUT_S} s); node RSS ${rssMiB(pid).toFixed(0)} MiB\n`);
    assert.deepEqual([...codes.keys()], [200]);
    // Served throughout: every normal request answered 200 (latencies are printed above,
    // not asserted: a loaded CI machine is not a benchmark).
    assert.equal(cut.length, SLOW_TLS, 'every slow client was cut');
    // Cut by headers_timeout, not before: each lived at least that long after its handshake.
    assert.ok(cut[0]! >= HEADERS_TIMEOUT_S - 0.05, `first cut ${cut[0]} s after its handshake`);
    assert.equal(node.child.exitCode, null);
  });
});
