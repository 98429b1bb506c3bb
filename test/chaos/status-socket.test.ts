// The status socket is local only: the node (primary and workers) listens on TCP
// exactly where the config says and nowhere else, the status API is a unix socket
// with the configured mode, and a TCP-looking status_socket value never becomes a
// TCP listener.
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StatusClient } from '../../src/status/index.js';
import { CLI, example } from '../helpers/paths.js';
import { programHash } from '../helpers/node.js';
import { childrenOf, freePort, get, guestLinks, processesMatching, socketInodes, startCliNode, tcpListeners, type CliNode } from './harness.js';

describe('status socket', () => {
  let node: CliNode;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-'));
    node = await startCliNode({
      dir, workers: 2,
      programs: [{ name: 'counter', script: example('counter') }],
      server: ['status_socket_mode = 0o640'],
    });
    assert.equal((await get(node, `/vm/${programHash('counter')}/state/increment`)).status, 200);
  });

  after(async () => {
    assert.equal(await node.stop(), 0);
    await rm(dir, { recursive: true, force: true });
  });

  it('no TCP listener besides the configured https and http addresses (primary and workers)', () => {
    const pids = [node.child.pid!, ...childrenOf(node.child.pid!).filter((pid) => processesMatching(CLI).includes(pid))];
    assert.equal(pids.length, 3, 'primary + 2 workers');
    const listeners = new Set(pids.flatMap((pid) => tcpListeners(pid)));
    const links = guestLinks(node.socket);
    assert.equal(links.length, 1, 'the counter program has its guest-link listener');
    const expected = [`127.0.0.1:${node.httpsPort}`, `127.0.0.1:${node.httpPort}`, ...links];
    process.stdout.write(`# status socket: TCP listeners of primary+workers ${JSON.stringify([...listeners].sort())}, configured ${JSON.stringify(expected)}\n`);
    assert.deepEqual([...listeners].sort(), expected.sort());
  });

  it('is a unix socket with the configured mode (0640), held by the primary', async () => {
    const stats = await lstat(node.socket);
    assert.ok(stats.isSocket());
    assert.equal(stats.mode & 0o777, 0o640);
    // /proc/net/unix: the listening socket bound to that path belongs to the primary.
    const unix = (await readFile('/proc/net/unix', 'utf8')).split('\n').filter((l) => l.endsWith(` ${node.socket}`));
    const inodes = unix.map((l) => l.trim().split(/\s+/)[6]!);
    const held = socketInodes(node.child.pid!);
    assert.ok(inodes.some((i) => held.has(i)), 'the primary holds the status socket');
    const status = await new StatusClient(node.socket).status();
    assert.equal(status.version.length > 0, true);
  });

  it('a TCP-looking status_socket value never opens a TCP port', async () => {
    const port = await freePort();
    const sub = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-'));
    try {
      const other = await startCliNode({ dir: sub, programs: [], server: [`status_socket = "127.0.0.1:${port}"`], noWait: true }).catch((e: Error) => e);
      if (other instanceof Error) throw other;
      // It either refuses the value or makes a file of that name next to the config: never TCP.
      const exited = await Promise.race([new Promise<number | null>((r) => other.child.once('exit', r)), new Promise<'running'>((r) => setTimeout(() => r('running'), 3000))]);
      const refused = await new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => { socket.destroy(); resolve(false); });
        socket.once('error', () => resolve(true));
      });
      process.stdout.write(`# status socket: status_socket = "127.0.0.1:${port}" -> ${exited === 'running' ? 'unix socket file of that name' : `exit ${exited}`}, TCP port ${refused ? 'closed' : 'OPEN'}\n`);
      assert.ok(refused, 'a TCP port was opened');
      if (other.child.exitCode === null) assert.equal(await other.stop(), 0);
    } finally {
      await rm(sub, { recursive: true, force: true });
    }
  });
});
