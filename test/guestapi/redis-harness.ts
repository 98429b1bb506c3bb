// A real redis-server (Debian's package) for one test file: its own free loopback
// port and temporary folder, no persistence, stopped (and restartable on the same
// port) by the test. 'aleph-edge-test-' in its folder lets the suite's orphan check
// find a server a test forgot.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../helpers/ports.js';

export interface RedisServer {
  port: number;
  address: string; // redis://[user:password@]127.0.0.1:<port>
  /** With `unixSocket`: the socket (mode 0700) and its address unix:<path>. */
  socket?: string;
  dir: string;
  /** Stops the server (SIGTERM, then waits for exit). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Runs one command through redis-cli (raw output). */
  cli(...args: string[]): Promise<string>;
}


export interface RedisOptions {
  /** An ACL user the node logs in as; the default user is then off (no anonymous access). */
  acl?: { user: string; password: string };
  /** Listen on a unix socket in the server's folder, mode 0700, and on no TCP port. */
  unixSocket?: boolean;
}

async function answers(where: net.NetConnectOpts, acl: RedisOptions['acl']): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(where, () => socket.write(`${acl ? `AUTH ${acl.user} ${acl.password}\r\n` : ''}PING\r\n`));
    let seen = '';
    socket.on('data', (chunk) => {
      seen += chunk.toString();
      if (seen.split('\r\n').length - 1 < (acl ? 2 : 1)) return; // AUTH's answer, then PING's
      socket.destroy();
      resolve(seen.endsWith('+PONG\r\n'));
    });
    socket.once('error', () => resolve(false));
  });
}

/** The keys and commands the node needs (docs/guest-api.md, "Redis in production"). */
export const ACL_RULES = ['~ae:*', '+@read', '+@write', '+@sortedset', '+@scripting', '+@transaction', '+ping', '+select', '-@dangerous'];

export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-redis-'));
  const port = await freePort();
  const socketPath = options.unixSocket ? path.join(dir, 'redis.sock') : undefined;
  const secure = [
    ...(socketPath ? ['--unixsocket', socketPath, '--unixsocketperm', '700', '--port', '0'] : []),
    // The rules docs/guest-api.md gives for production.
    ...(options.acl ? ['--user', 'default', 'off', '--user', options.acl.user, 'on', `>${options.acl.password}`, ...ACL_RULES] : []),
  ];
  const login = options.acl ? ['--user', options.acl.user, '--pass', options.acl.password, '--no-auth-warning'] : [];
  let child: ChildProcess | undefined;

  const start = async () => {
    child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
      '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning', ...secure,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    const deadline = Date.now() + 10_000;
    while (!(await answers(socketPath ? { path: socketPath } : { host: '127.0.0.1', port }, options.acl))) {
      if (child.exitCode !== null) throw new Error(`redis-server exited: ${stderr.slice(0, 500)}`);
      if (Date.now() > deadline) throw new Error('redis-server did not answer within 10 s');
      await sleep(25);
    }
  };

  const stop = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGTERM');
    await exited;
  };

  await start();
  return {
    port,
    address: options.acl ? `redis://${options.acl.user}:${options.acl.password}@127.0.0.1:${port}` : `redis://127.0.0.1:${port}`,
    socket: socketPath,
    dir,
    start,
    stop: async () => {
      await stop();
    },
    cli: (...args) => new Promise((resolve, reject) => {
      const cli = spawn('redis-cli', [...(socketPath ? ['-s', socketPath] : ['-p', String(port)]), ...login, '--raw', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      cli.stdout.on('data', (chunk) => (out += chunk));
      cli.once('error', reject);
      cli.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`redis-cli exited ${code}`))));
    }),
  };
}

/** Stops the server and removes its folder. */
export async function removeRedis(server: RedisServer): Promise<void> {
  await server.stop();
  await rm(server.dir, { recursive: true, force: true });
}
