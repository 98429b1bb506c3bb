// "Outside" for tests of outbound internet (CI has none): a network namespace of the
// test's own behind a veth pair, routed from the host, with an HTTP server on its
// address answering "hello from outside". Needs root; names start with `prefix`.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { until } from './node.js';

export interface Outside {
  /** The server's address and port. */
  ip: string;
  port: number;
  close(): Promise<void>;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });

/** Why pasta cannot run here ('' when it can): it must be installed, and it copies the host's default-route interface. */
export function pastaSkipReason(): string {
  if (!(process.env.PATH ?? '').split(':').some((dir) => existsSync(path.join(dir, 'pasta')))) return 'pasta is not installed (.ci/setup.d/aleph.sh installs passt)';
  const routes = ['-4', '-6'].map((family) => { try { return ip(family, 'route', 'show', 'default').trim(); } catch { return ''; } });
  return routes.some(Boolean) ? '' : 'the host has no default route (pasta needs one)';
}

/** The host's default IPv4 gateway, if any. */
export function defaultGateway(): string | undefined {
  return /default via (\S+)/.exec(ip('-4', 'route', 'show', 'default'))?.[1];
}

/**
 * Sets up the namespace, the veth pair and the server: `prefix` keeps names unique per
 * test file (<= 6 characters), `base` is a /24 of documentation addresses of its own
 * (e.g. '198.51.100', '203.0.113').
 */
export async function startOutside(prefix: string, base: string): Promise<Outside> {
  const id = process.pid % 10_000;
  const ns = `${prefix}o${id}`;
  const hostEnd = `${prefix}h${id}`;
  const outsideEnd = `${prefix}p${id}`;
  const subnet = 4 * (id % 60);
  const address = `${base}.${subnet + 2}`;
  let server: ChildProcess | undefined;
  let www = '';
  const close = async () => {
    if (server?.pid) process.kill(server.pid, 'SIGTERM');
    try { ip('link', 'delete', hostEnd); } catch { /* went with the namespace */ }
    try { ip('netns', 'delete', ns); } catch { /* never made */ }
    if (www) await rm(www, { recursive: true, force: true });
  };
  try {
    ip('netns', 'add', ns);
    ip('link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', outsideEnd);
    ip('link', 'set', outsideEnd, 'netns', ns);
    ip('addr', 'add', `${base}.${subnet + 1}/30`, 'dev', hostEnd);
    ip('link', 'set', hostEnd, 'up');
    ip('-n', ns, 'addr', 'add', `${address}/30`, 'dev', outsideEnd);
    ip('-n', ns, 'link', 'set', outsideEnd, 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    www = await mkdtemp(path.join(os.tmpdir(), `${prefix}-outside-`));
    await writeFile(path.join(www, 'index.html'), 'hello from outside\n');
    server = spawn('ip', ['netns', 'exec', ns, 'python3', '-m', 'http.server', '8000', '--bind', address, '--directory', www], { stdio: 'ignore' });
    await until(() => new Promise<boolean>((resolve) => {
      const probe = net.connect({ host: address, port: 8000 }, () => { probe.destroy(); resolve(true); });
      probe.once('error', () => resolve(false));
    }), 20_000, 'the outside server');
  } catch (error) {
    await close();
    throw error;
  }
  return { ip: address, port: 8000, close };
}
