// Outbound internet for a program whose message asks for it (environment.internet),
// without the host's loopback: a sandboxed process, or the qemu process of a user-mode
// VM (whose slirp would otherwise map 10.0.2.2 to the host's 127.0.0.1). Its network
// namespace gets a route out through `pasta`
// (Debian's passt), which carries the namespace's TCP/UDP connections as the host's
// own sockets. Nothing comes in and nothing of the host's loopback is reachable:
//   -t none -u none   no host port forwarded into the namespace (pasta's default
//                     would bind every port the program listens on, on the host);
//                     a VM's forwarded port is the one exception: 127.0.0.1:<port>
//                     on the host, spliced to the namespace's loopback
//   -T none -U none   no namespace port forwarded to the host's loopback (pasta's
//                     default would let the program reach Redis, guest links, ...)
//   --no-map-gw       the gateway address is not the host's 127.0.0.1
// The namespace also gets a copy of the host's address, so that address is the
// namespace's own. Programs without internet keep bubblewrap's bare namespace.
//
// pasta, run by root, cannot open /proc/<pid>/ns/net of another process (it drops
// its capabilities first), so the namespace is a named one (`ip netns add`) that
// bubblewrap (or qemu) enters through nsenter, and pasta is run as root (`--runas 0`, still
// in its own seccomp/namespace jail) to join it. Only a root node does this.

import { execFile, execFileSync } from 'node:child_process';
import { accessSync, constants, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { DriverStartError } from './types.js';

const run = promisify(execFile);

/** Named network namespaces of sandboxed programs with internet: this prefix and their run folder's name. */
export const OUTBOUND_NETNS_PREFIX = 'aleph-edge-';
const NETNS_DIR = '/run/netns';

export interface OutboundTools {
  ip: string;
  nsenter: string;
  pasta: string;
}

export interface Outbound {
  /** The named namespace's path, for `nsenter --net=`. */
  netns: string;
  /** Deletes the namespace (pasta quits with it) and stops pasta; idempotent. */
  close(): Promise<void>;
}

function findExecutable(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin').split(path.delimiter)) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

/** The tools, or why this node cannot give a program internet (not root, a tool missing). */
export function outboundTools(): { tools: OutboundTools } | { missing: string } {
  if (process.getuid?.() !== 0) return { missing: 'the node does not run as root (a named network namespace joined by pasta)' };
  const ip = findExecutable('ip') ?? (statSync('/usr/sbin/ip', { throwIfNoEntry: false }) ? '/usr/sbin/ip' : undefined);
  const nsenter = findExecutable('nsenter');
  const pasta = findExecutable('pasta');
  if (!ip || !nsenter || !pasta) {
    return { missing: [!pasta && 'pasta (apt install passt)', !ip && 'ip (apt install iproute2)', !nsenter && 'nsenter (util-linux)'].filter(Boolean).join(', ') + ' not installed' };
  }
  return { tools: { ip, nsenter, pasta } };
}

/**
 * Creates the named namespace `<prefix><name>` and connects it with pasta; resolves
 * once pasta has configured it (pasta forks into the background after that).
 * `loopbackTcpPort`: bound on the host's 127.0.0.1 only, to the same port on the
 * namespace's loopback (how the node reaches a user-mode VM's forwarded port).
 */
export async function openOutbound(tools: OutboundTools, name: string, runDir: string, options: { loopbackTcpPort?: number } = {}): Promise<Outbound> {
  const netnsName = `${OUTBOUND_NETNS_PREFIX}${name}`;
  await run(tools.ip, ['netns', 'add', netnsName]).catch((error: Error & { stderr?: string }) => {
    throw new DriverStartError(`cannot create the program's network namespace: ${(error.stderr ?? error.message).trim()}`);
  });
  const pidFile = path.join(runDir, 'pasta.pid');
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
      await run(tools.ip, ['netns', 'delete', netnsName]).catch(() => undefined);
      // pasta quits when its namespace is deleted; this is the safety net, for that
      // pasta only (a pid read from a file may have been reused meanwhile).
      if (Number.isInteger(pid) && pid > 1) {
        const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (cmdline.split('\0').includes(netnsName)) {
          try {
            process.kill(pid, 'SIGTERM');
          } catch {
            // gone already
          }
        }
      }
    })();
    return closed;
  };
  try {
    await run(tools.pasta, [
      '--runas', '0', '--quiet', '--config-net',
      '-t', options.loopbackTcpPort ? `127.0.0.1/${options.loopbackTcpPort}` : 'none',
      '-u', 'none', '-T', 'none', '-U', 'none', '--no-map-gw',
      '--pid', pidFile, '--netns', netnsName,
    ], { timeout: 10_000 });
  } catch (error) {
    await close();
    const text = ((error as { stderr?: string }).stderr ?? (error as Error).message).split('\n').filter((l) => l && !l.startsWith('Failed to send')).join('; ');
    throw new DriverStartError(`pasta could not connect the program's network namespace: ${text}`);
  }
  return { netns: path.join(NETNS_DIR, netnsName), close };
}

/** Deletes the namespaces of run folders a previous node left (it was SIGKILLed); their pasta quits with them. */
export function reapOutbound(runRoot: string): void {
  let names: string[];
  try {
    names = readdirSync(runRoot);
  } catch {
    return;
  }
  const ip = findExecutable('ip') ?? '/usr/sbin/ip';
  for (const name of names) {
    const netns = `${OUTBOUND_NETNS_PREFIX}${name}`;
    if (!statSync(path.join(NETNS_DIR, netns), { throwIfNoEntry: false })) continue;
    try {
      execFileSync(ip, ['netns', 'delete', netns], { stdio: 'ignore' });
    } catch {
      // gone meanwhile, or not ours to delete
    }
  }
}
