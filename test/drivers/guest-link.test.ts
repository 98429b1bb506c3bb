// The guest link forwards TCP connections to a unix socket, within bounds, and leaves
// nothing behind when closed.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { guestEnv, openGuestLink } from '../../src/drivers/index.js';

/** A unix-socket echo server that prefixes what it echoes, counting its connections. */
async function echoServer(socketPath: string): Promise<{ server: net.Server; open: () => number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => socket.write(Buffer.concat([Buffer.from('echo:'), chunk])));
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    server,
    open: () => sockets.size,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

function exchange(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    socket.once('data', (chunk) => resolve(chunk.toString()));
    socket.once('error', reject);
    socket.write(text);
  });
}

function closed(socket: net.Socket): Promise<void> {
  // Reading is what lets the peer's FIN surface as 'end', then 'close'.
  socket.resume();
  socket.on('error', () => undefined);
  return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
}

async function until(check: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(10);
  }
}

describe('guest link', () => {
  let dir: string;
  let socketPath: string;
  let echo: Awaited<ReturnType<typeof echoServer>>;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-link-'));
    socketPath = path.join(dir, 'guest.sock');
    echo = await echoServer(socketPath);
  });
  after(async () => {
    await echo.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('forwards each connection to the unix socket, both ways, on a free port', async () => {
    const link = await openGuestLink({ socket: socketPath, host: '127.0.0.1' });
    try {
      assert.ok(link.port > 0);
      assert.equal(link.url, `http://127.0.0.1:${link.port}`);
      const a = await connect(link.port);
      const b = await connect(link.port);
      assert.equal(await exchange(a, 'one'), 'echo:one');
      assert.equal(await exchange(b, 'two'), 'echo:two');
      assert.equal(echo.open(), 2);
      a.destroy();
      b.destroy();
      await until(() => link.connections() === 0 && echo.open() === 0);
    } finally {
      await link.close();
    }
  });

  it('closes connections beyond the cap at once and serves again once one ends', async () => {
    const link = await openGuestLink({ socket: socketPath, host: '127.0.0.1', maxConnections: 2 });
    try {
      const a = await connect(link.port);
      const b = await connect(link.port);
      assert.equal(await exchange(a, 'a'), 'echo:a');
      assert.equal(await exchange(b, 'b'), 'echo:b');
      const c = await connect(link.port);
      await closed(c);
      assert.equal(echo.open(), 2, 'the refused connection never reached the socket');
      a.destroy();
      await until(() => link.connections() === 1 && echo.open() === 1);
      const d = await connect(link.port);
      assert.equal(await exchange(d, 'd'), 'echo:d');
      b.destroy();
      d.destroy();
    } finally {
      await link.close();
    }
  });

  it('closes a connection that stays idle', async () => {
    const link = await openGuestLink({ socket: socketPath, host: '127.0.0.1', idleTimeoutMs: 150 });
    try {
      const a = await connect(link.port);
      assert.equal(await exchange(a, 'x'), 'echo:x');
      await closed(a);
      await until(() => echo.open() === 0 && link.connections() === 0);
    } finally {
      await link.close();
    }
  });

  it('refuses peers that are not allowed', async () => {
    const link = await openGuestLink({ socket: socketPath, host: '127.0.0.1', allowedPeers: ['10.9.9.9'] });
    try {
      const a = await connect(link.port);
      await closed(a);
      assert.equal(echo.open(), 0);
    } finally {
      await link.close();
    }
    const allowed = await openGuestLink({ socket: socketPath, host: '127.0.0.1', allowedPeers: ['127.0.0.1'] });
    try {
      const a = await connect(allowed.port);
      assert.equal(await exchange(a, 'ok'), 'echo:ok');
      a.destroy();
    } finally {
      await allowed.close();
    }
  });

  it('closes a connection whose socket is missing', async () => {
    const link = await openGuestLink({ socket: path.join(dir, 'absent.sock'), host: '127.0.0.1' });
    try {
      const a = await connect(link.port);
      await closed(a);
      await until(() => link.connections() === 0);
    } finally {
      await link.close();
    }
  });

  it('listens on another loopback address (for qemu user-mode guestfwd)', async () => {
    const link = await openGuestLink({ socket: socketPath, host: '127.0.0.2' });
    try {
      assert.equal(link.url, `http://127.0.0.2:${link.port}`);
      const a = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.2', port: link.port }, () => resolve(s));
        s.once('error', reject);
      });
      assert.equal(await exchange(a, 'q'), 'echo:q');
      a.destroy();
      await assert.rejects(connect(link.port), /ECONNREFUSED/, 'not on 127.0.0.1');
    } finally {
      await link.close();
    }
  });

  it('close() ends open connections and frees the port', async () => {
    const link = await openGuestLink({ socket: socketPath, host: '127.0.0.1' });
    const a = await connect(link.port);
    assert.equal(await exchange(a, 'x'), 'echo:x');
    await link.close();
    await closed(a);
    await until(() => echo.open() === 0);
    await assert.rejects(connect(link.port), /ECONNREFUSED/);
    await link.close(); // idempotent
  });

  it('guestEnv names the variables the reference runtime sets', () => {
    assert.deepEqual(guestEnv('http://127.0.0.1:9', '0xabc'), {
      ALEPH_API_HOST: 'http://127.0.0.1:9',
      ALEPH_API_UNIX_SOCKET: '',
      ALEPH_REMOTE_CRYPTO_HOST: 'http://127.0.0.1:9',
      ALEPH_REMOTE_CRYPTO_UNIX_SOCKET: '',
      ALEPH_ADDRESS_TO_USE: '0xabc',
    });
  });
});
