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
  address: string; // redis://127.0.0.1:<port>
  dir: string;
  /** Stops the server (SIGTERM, then waits for exit). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Runs one command through redis-cli (raw output). */
  cli(...args: string[]): Promise<string>;
}


async function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
    socket.once('data', (chunk) => {
      socket.destroy();
      resolve(chunk.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startRedis(): Promise<RedisServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;

  const start = async () => {
    child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
      '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    const deadline = Date.now() + 10_000;
    while (!(await answers(port))) {
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
    address: `redis://127.0.0.1:${port}`,
    dir,
    start,
    stop: async () => {
      await stop();
    },
    cli: (...args) => new Promise((resolve, reject) => {
      const cli = spawn('redis-cli', ['-p', String(port), '--raw', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
