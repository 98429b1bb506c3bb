// The fork server for ASGI programs ([drivers.process] fork_server, docs/drivers.md):
// one python3 running guest/forkserver/server.py, which has imported our ASGI server
// and FastAPI & co once and forks a program per request. A program's process is then
// guest/forkserver/client.py (the command below), which hands its argv, environment,
// folder and stdio to the server, writes the program's pid on fd 3 and stands for the
// program until it exits. Without a server answering, the client starts the program
// itself: a slower start, never a failed one. Local (unsandboxed) programs only: a
// sandboxed one runs in its own namespaces, which a fork of a shared process is not in.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../common/index.js';

const FORKSERVER_DIR = fileURLToPath(new URL('../../../../guest/forkserver/', import.meta.url));
/** What the server imports before forking (those installed; the rest are skipped). */
export const FORK_SERVER_MODULES = ['fastapi', 'fastapi.responses', 'pydantic', 'starlette.applications', 'starlette.routing', 'anyio', 'asyncio', 'json', 'email.parser'];

export class ForkServer {
  private child: ChildProcess | undefined;
  private dir: string | undefined;

  constructor(private readonly python: string, private readonly log: Logger) {}

  /**
   * The argv that runs an ASGI program through the server (`args`: aleph_asgi's own
   * arguments). Starts the server when none runs; the client waits for it to listen.
   */
  command(args: string[]): string[] {
    return [this.python, '-I', '-S', join(FORKSERVER_DIR, 'client.py'), this.socket(), ...args];
  }

  /** Stops the server (its forked programs are killed with it). */
  close(): void {
    this.child?.stdin?.end();
    this.child = undefined;
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }

  private socket(): string {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) this.spawn();
    return join(this.dir!, 'fork.sock');
  }

  private spawn(): void {
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    // 0700: only the node's user may ask for a program to be forked.
    this.dir = mkdtempSync(join(tmpdir(), 'aleph-edge-fork-'));
    const child = spawn(this.python, ['-I', join(FORKSERVER_DIR, 'server.py'), join(this.dir, 'fork.sock'), ...FORK_SERVER_MODULES], {
      // stdin is the server's lifeline: it exits (and kills its programs) when the node goes.
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    child.on('error', (err) => this.log.warn('fork server could not start; programs start without it', { error: err.message }));
    lines(child.stdout!, (line) => this.log.info('fork server', { said: line }));
    lines(child.stderr!, (line) => this.log.warn('fork server', { said: line }));
    child.once('exit', (code, signal) => {
      if (this.child === child) this.log.warn('fork server exited; the next ASGI program starts a new one', { code, signal });
    });
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
    this.child = child;
  }
}

/**
 * Reads the program's pid from the client's fd 3 (one line), for the guest link's
 * process-tree check. Resolves undefined when the client closes it without one.
 */
export function programPid(stream: Readable): Promise<number | undefined> {
  return new Promise((resolve) => {
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      text += chunk;
      const pid = /^(\d+)\n/.exec(text)?.[1];
      if (pid) resolve(Number(pid));
      if (text.length > 32) stream.destroy();
    });
    stream.on('close', () => resolve(undefined));
    stream.on('error', () => resolve(undefined));
  });
}

function lines(stream: Readable, each: (line: string) => void): void {
  let buffer = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) each(line.slice(0, 500));
    }
    if (buffer.length > 4096) buffer = '';
  });
}
