// The status socket's place on the filesystem: path validation, parent directory,
// stale-socket takeover and cleanup. The status API is local-only on purpose, so
// anything that could end up as a TCP listener is refused before listen().

import { connect } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname, isAbsolute } from 'node:path';

/** sun_path is 108 bytes on Linux, including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;
const PARENT_DIR_MODE = 0o750;
/** How long to wait for a live peer to accept before giving up on the probe. */
const PROBE_TIMEOUT_MS = 2000;

/** Identity of the socket file we created, so close() never removes a successor's file. */
export interface SocketFileId {
  dev: number;
  ino: number;
}

/** Throws unless `path` is an absolute filesystem path usable for a unix socket. */
export function assertSocketPath(path: unknown): asserts path is string {
  if (typeof path !== 'string' || path === '') {
    throw new Error('status socket path must be a non-empty string');
  }
  // Relative paths are refused too: "127.0.0.1:9000" or "9000" must never be
  // mistaken for a file name (or, by a later refactor, for a TCP address).
  if (!isAbsolute(path)) {
    throw new Error(`status socket must be an absolute unix socket path, got "${path}" (TCP is not supported)`);
  }
  if (path.includes('\0')) throw new Error('status socket path must not contain NUL bytes');
  if (path.endsWith('/')) throw new Error(`status socket path "${path}" names a directory`);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new Error(`status socket path is too long (${Buffer.byteLength(path)} bytes, max ${MAX_SOCKET_PATH_BYTES}): ${path}`);
  }
}

/** Creates missing parent directories with mode 0750 (umask-independent). */
export async function ensureParentDir(path: string): Promise<void> {
  const dir = dirname(path);
  const created = await mkdir(dir, { recursive: true, mode: PARENT_DIR_MODE });
  if (created === undefined) return; // existed already: its mode is the operator's business
  // mkdir's mode is filtered by the umask; chmod every directory we created.
  for (let current = dir; ; current = dirname(current)) {
    await chmod(current, PARENT_DIR_MODE);
    if (current === created || current === dirname(current)) break;
  }
}

/**
 * Makes `path` free for listen(): nothing there is fine; a socket nobody answers on
 * is a leftover from a crash and is removed; a live socket or any other kind of
 * file is refused (we never delete what we cannot prove is ours to replace).
 */
export async function clearStaleSocket(path: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  if (!stats.isSocket()) {
    throw new Error(`refusing to use ${path} as the status socket: it exists and is not a socket`);
  }
  if ((await probeSocket(path)) === 'live') {
    throw new Error(`another aleph-edge is already listening on ${path}`);
  }
  await unlinkIfPresent(path);
}

/** Records which file listen() created. */
export async function socketFileId(path: string): Promise<SocketFileId> {
  const stats = await lstat(path);
  return { dev: stats.dev, ino: stats.ino };
}

/** Removes the socket file if it is still the one we created. */
export async function removeSocketFile(path: string, id: SocketFileId | undefined): Promise<void> {
  try {
    const stats = await lstat(path);
    if (!stats.isSocket()) return;
    if (id && (stats.dev !== id.dev || stats.ino !== id.ino)) return;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  await unlinkIfPresent(path);
}

type ProbeResult = 'live' | 'stale';

function probeSocket(path: string): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    const finish = (result: ProbeResult | Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    // A peer that neither accepts nor refuses is treated as live: never steal on doubt.
    const timer = setTimeout(() => finish('live'), PROBE_TIMEOUT_MS);
    socket.once('connect', () => finish('live'));
    socket.once('error', (err) => {
      const code = errnoCode(err);
      if (code === 'ECONNREFUSED' || code === 'ENOENT') finish('stale');
      else finish(new Error(`cannot check the existing socket at ${path}: ${err.message}`));
    });
  });
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}

export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}
