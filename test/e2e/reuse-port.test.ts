// Workers listen with SO_REUSEPORT: each owns a listening socket on the port (the
// primary none), connections spread over them, and a second node on the same port
// still fails with EADDRINUSE instead of silently taking half the connections.
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { CLI } from '../helpers/paths.js';
import { childrenOf, openFds, processesMatching, sleep, startCliNode, tcpListeners, type CliNode } from '../chaos/harness.js';

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
    await sleep(200);
    const spread = workers.map((pid, i) => openFds(pid) - before[i]!);
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
});
