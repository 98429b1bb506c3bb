// A sandboxed program's network: its own network namespace (bubblewrap's
// --unshare-net, part of --unshare-all), holding only a loopback interface. Nothing
// of the host's network is reachable from inside: no other program's port or guest
// API, no Redis, no host service, no internet (unless asked for, below). Two socat relays, started inside the
// namespace before the program, are its only ways out, both through unix sockets in
// a per-execution folder that only the node's user can open (0700):
//   <run>/http.sock  -> 127.0.0.1:PROGRAM_PORT inside: how the node reaches the program
//   127.0.0.2:GUEST_API_PORT inside -> <run>/api.sock: the execution's own guest API
// The program can listen on the same fixed port as every other (each has its own
// namespace), so no host port is picked and none can be taken by another process.
// A program with environment.internet also gets a route out through pasta
// (../outbound.ts): its namespace is then a named one that bubblewrap enters.

import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ProcessSandbox } from '../../programs/index.js';
import { openOutbound, outboundTools, type Outbound } from '../outbound.js';

/** Where the run folder appears inside the sandbox. */
export const SANDBOX_RUN = '/run/aleph-edge';
/** The port a sandboxed program listens on, inside its namespace (as in a VM). */
export const SANDBOX_PROGRAM_PORT = 8080;
export const SANDBOX_PROGRAM_HOST = '127.0.0.1';
/** Where a sandboxed program reaches its guest API, inside its namespace. */
export const SANDBOX_GUEST_API = { host: '127.0.0.2', port: 8081 } as const;

export interface SandboxRun {
  /** Host folder (0700) bound at SANDBOX_RUN. */
  dir: string;
  /** The node connects here to reach the program. */
  httpSocket: string;
  /** The full argv: [sh -c trap ...] bwrap <options> <network and run binds> -- sh -c <relays> <command>. */
  argv: string[];
  /** ALEPH_API_HOST and ALEPH_API_UNIX_SOCKET as the program sees them ('' without a guest API). */
  guestUrl: string;
  guestSocket: string;
  /** The program has a route out (pasta). */
  internet: boolean;
  /** It asked for one and this node cannot give it: why. */
  internetMissing: string | undefined;
  /** Removes the run folder (and the network namespace with its pasta, for a program with internet). */
  remove(): Promise<void>;
}

/**
 * Runs each relay as a child of the sandbox's shell, then execs the program. socat's
 * log goes nowhere: a connection refused while the program is still starting is normal
 * (the readiness probe retries) and would otherwise fill the program's log.
 */
function relayScript(socat: string, guest: boolean): string {
  const http = `${socat} UNIX-LISTEN:${SANDBOX_RUN}/http.sock,fork,umask=077 TCP:${SANDBOX_PROGRAM_HOST}:${SANDBOX_PROGRAM_PORT} 2>/dev/null &`;
  const api = `${socat} TCP-LISTEN:${SANDBOX_GUEST_API.port},bind=${SANDBOX_GUEST_API.host},fork,reuseaddr UNIX-CONNECT:${SANDBOX_RUN}/api.sock 2>/dev/null &`;
  return [http, guest ? api : '', 'exec "$@"'].filter(Boolean).join('\n');
}

/** Prepares the run folder and the command line of one sandboxed execution. */
export async function prepareSandbox(
  sandbox: ProcessSandbox,
  runRoot: string,
  executionId: string,
  command: string[],
  guestApiSocket: string | undefined,
): Promise<SandboxRun> {
  // A node that cannot give internet runs the program without (the driver logs why).
  const found = sandbox.internet ? outboundTools() : undefined;
  const tools = found && 'tools' in found ? found.tools : undefined;
  let internetMissing = found && 'missing' in found ? found.missing : undefined;
  await mkdir(runRoot, { recursive: true, mode: 0o700 });
  await chmod(runRoot, 0o700);
  const dir = await mkdtemp(path.join(runRoot, `${executionId}-`));
  let outbound: Outbound | undefined;
  if (tools) {
    try {
      outbound = await openOutbound(tools, path.basename(dir), dir);
    } catch (error) {
      // e.g. a host without a default route, where pasta has no interface to copy.
      internetMissing = (error as Error).message;
    }
  }
  const binds = ['--bind', dir, SANDBOX_RUN];
  if (guestApiSocket) binds.push('--bind', guestApiSocket, `${SANDBOX_RUN}/api.sock`);
  // Without internet: bubblewrap's own empty namespace. With: the named one pasta serves.
  const network = outbound ? [tools!.nsenter, `--net=${outbound.netns}`] : [];
  const argv = [
    ...(sandbox.ignoreTerm ? ['/bin/sh', '-c', 'trap "" TERM; exec "$0" "$@"'] : []),
    ...network, sandbox.bwrap, ...sandbox.options, outbound ? '--share-net' : '--unshare-net', ...binds, '--',
    '/bin/sh', '-c', relayScript(sandbox.socat, guestApiSocket !== undefined), 'aleph-sandbox', ...command,
  ];
  return {
    dir,
    httpSocket: path.join(dir, 'http.sock'),
    argv,
    guestUrl: guestApiSocket ? `http://${SANDBOX_GUEST_API.host}:${SANDBOX_GUEST_API.port}` : '',
    guestSocket: guestApiSocket ? `${SANDBOX_RUN}/api.sock` : '',
    internet: outbound !== undefined,
    internetMissing,
    remove: async () => {
      await outbound?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A fresh parent of run folders when the driver was given none (a name no one else can have made). */
export function temporaryRunRoot(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'aleph-edge-sandbox-'));
}
