// The state directory lock: one node per state directory (the status socket's
// folder: the socket, the records of running programs). Taken before anything in
// that folder is cleaned up, so a second `run` never kills the first node's
// programs or removes its socket.
//
// Node has no flock(). The lock is a pid file created atomically: the record is
// written to a temp file first and hard-linked to its name (link() fails if the name
// exists, and the file is never seen half-written). It names its holder by pid,
// start time and boot id (/proc), so it is held exactly while that process runs: a
// SIGKILLed node's file is stale, and a recycled pid is not mistaken for a holder.
// A stale file is renamed aside before the new link; if what was moved turns out
// not to be the stale record (another node took over in between), it is put back.

import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bootId, createLogger, procStat, sameProcess } from '../common/index.js';

const log = createLogger('node');

export const LOCK_FILE = 'aleph-edge.pid';

interface LockRecord {
  pid: number;
  start_time: string;
  boot_id: string;
  status_socket: string;
}

/** Another live node holds the state directory. */
export class NodeAlreadyRunningError extends Error {
  override readonly name = 'NodeAlreadyRunningError';
  constructor(readonly pid: number, readonly statusSocket: string) {
    super(`another aleph-edge is running (pid ${pid}, status socket ${statusSocket})`);
  }
}

function readRecord(file: string): LockRecord | undefined {
  try {
    const value = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockRecord>;
    if (Number.isInteger(value.pid) && typeof value.start_time === 'string' && typeof value.boot_id === 'string') {
      return { pid: value.pid!, start_time: value.start_time, boot_id: value.boot_id, status_socket: String(value.status_socket ?? '') };
    }
  } catch {
    // missing, unreadable or not ours: no live holder
  }
  return undefined;
}

function sameRecord(a: LockRecord | undefined, b: LockRecord | undefined): boolean {
  return a !== undefined && b !== undefined && a.pid === b.pid && a.start_time === b.start_time && a.boot_id === b.boot_id;
}

function errno(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

export class StateLock {
  private released = false;
  private readonly onExit = () => this.release();

  private constructor(readonly file: string, private readonly record: LockRecord) {
    // A node that exits without draining (a fatal error) leaves no lock behind.
    process.once('exit', this.onExit);
  }

  /**
   * Takes the lock on `dir` for this process, or throws NodeAlreadyRunningError when
   * a live node holds it. Synchronous: nothing else runs in between.
   */
  static acquire(dir: string, statusSocket: string): StateLock {
    mkdirSync(dir, { recursive: true, mode: 0o750 });
    const file = path.join(dir, LOCK_FILE);
    const self = procStat(process.pid);
    const record: LockRecord = { pid: process.pid, start_time: self?.startTime ?? '', boot_id: bootId(), status_socket: statusSocket };
    const temp = `${file}.${process.pid}.tmp`;
    writeFileSync(temp, JSON.stringify(record) + '\n', { mode: 0o644 });
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          linkSync(temp, file);
          return new StateLock(file, record);
        } catch (error) {
          if (errno(error) !== 'EEXIST') throw error;
        }
        const holder = readRecord(file);
        if (holder && sameProcess(holder.pid, holder.start_time, holder.boot_id)) {
          throw new NodeAlreadyRunningError(holder.pid, holder.status_socket || statusSocket);
        }
        StateLock.removeStale(file, holder);
      }
      throw new Error(`cannot take the state lock ${file}: other nodes keep starting on this directory`);
    } finally {
      rmSync(temp, { force: true });
    }
  }

  /** Moves a stale lock out of the way, unless a live node replaced it meanwhile. */
  private static removeStale(file: string, stale: LockRecord | undefined): void {
    const aside = `${file}.stale.${process.pid}`;
    try {
      renameSync(file, aside);
    } catch (error) {
      if (errno(error) === 'ENOENT') return; // someone else removed it: try again
      throw error;
    }
    const moved = readRecord(aside);
    if (stale === undefined ? moved !== undefined : !sameRecord(moved, stale)) {
      // Not the file we judged stale: a node that took over in between. Put it back
      // (the next attempt then finds it live).
      try {
        linkSync(aside, file);
      } catch {
        // a third node took the name; the next attempt judges that one
      }
    } else if (stale) {
      log.info('took over the state lock of a node that is gone', { pid: stale.pid, file });
    }
    rmSync(aside, { force: true });
  }

  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    process.off('exit', this.onExit);
    if (sameRecord(readRecord(this.file), this.record)) rmSync(this.file, { force: true });
  }
}
