// Workers listen with SO_REUSEPORT: each owns a listening socket on the port (the
// primary none), connections spread over them, and a second node on the same port
// still fails with EADDRINUSE instead of silently taking half the connections.
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { CLI } from '../helpers/paths.js';
import { existsSync } from 'node:fs';
import { childrenOf, freePort, openFds, processesMatching, startCliNode, tcpListeners, type CliNode } from '../chaos/harness.js';
import { until } from '../helpers/node.js';

describe('SO_REUSEPORT listeners in workers', () => {
  let node: CliNode;
  let workers: number[];

  before(async () => {
    node = await startCliNode({ workers: 2, programs: [] });
    workers = childrenOf(node.child.pid!).filter((pid) => processesMatching(CLI).includes(pid));
    assert.equal(workers.length, 2);
  });

  after(async () => {
    await node.stop();
  });

  it('each worker owns a listening socket on the port; the primary none', () => {
    const https = `127.0.0.1:${node.httpsPort}`;
    for (const pid of workers) assert.ok(tcpListeners(pid).includes(https), `worker ${pid}: ${tcpListeners(pid).join(' ')}`);
    assert.ok(!tcpListeners(node.child.pid!).includes(https), 'the primary holds no listener');
  });

  it('connections spread over both workers', async () => {
    const before = workers.map((pid) => openFds(pid));
    const sockets = await Promise.all(Array.from({ length: 200 }, () => new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca });
      socket.once('secureConnect', () => resolve(socket));
      socket.once('error', reject);
    })));
    // Accepted connections show up as fds a little after the clients' handshakes.
    let spread: number[] = [];
    await until(() => {
      spread = workers.map((pid, i) => openFds(pid) - before[i]!);
      return spread.reduce((a, b) => a + b, 0) >= 200;
    }, 10_000, '200 accepted connections');
    for (const socket of sockets) socket.destroy();
    process.stdout.write(`# reuseport spread: 200 connections -> workers ${spread.join(' / ')}\n`);
    assert.equal(spread.reduce((a, b) => a + b, 0), 200);
    for (const share of spread) assert.ok(share > 0, `a worker got no connection: ${spread.join(' / ')}`);
  });

  it('a second node on the same ports fails with EADDRINUSE', async () => {
    const second = await startCliNode({ workers: 2, programs: [], ports: { https: node.httpsPort, http: node.httpPort }, noWait: true });
    const code = await new Promise<number | null>((resolve) => second.child.once('exit', (c) => resolve(c)));
    assert.equal(code, 1);
    assert.match(second.stderr(), new RegExp(`cannot listen on https 127\\.0\\.0\\.1:${node.httpsPort}: EADDRINUSE`));
  });

  it('two nodes started at the same moment on the same ports: exactly one serves, the other fails', async () => {
    // The primary's probe used to close its exclusive socket before the workers bound with
    // SO_REUSEPORT: a second node starting in that window passed its own probe, and both
    // served, each taking half the connections.
    for (let round = 0; round < 2; round++) {
      const ports = { https: await freePort(), http: await freePort() };
      const pair = await Promise.all([0, 1].map(() => startCliNode({ workers: 2, programs: [], ports, noWait: true })));
      try {
        await until(() => pair.every((n) => n.child.exitCode !== null || existsSync(n.socket)), 30_000, 'both nodes ready or exited');
        const failed = pair.filter((n) => n.child.exitCode !== null);
        assert.equal(failed.length, 1, `round ${round}: ${failed.length} of 2 nodes failed to start`);
        assert.match(failed[0]!.stderr(), /cannot listen on https 127\.0\.0\.1:\d+: EADDRINUSE/);
      } finally {
        await Promise.all(pair.map((n) => n.stop()));
      }
    }
  });
});
