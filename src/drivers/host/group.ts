// Process-group signalling. Programs are spawned detached, so each is the leader of
// its own group (pgid = pid) and one signal reaches every process it forked.

import { readdir, readFile } from 'node:fs/promises';

/** Sends a signal to the whole group; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * True while any live (non-zombie) process remains in the group. kill(-pgid, 0)
 * alone counts zombies, and orphaned zombies linger until init reaps them (which,
 * in containers, can take seconds), so on Linux we confirm through /proc.
 */
export async function groupAlive(pgid: number): Promise<boolean> {
  if (!signalGroup(pgid, 0)) return false;
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return true; // no procfs: trust kill()
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readStat(entry);
    if (stat && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X') return true;
  }
  return false;
}

async function readStat(pid: string): Promise<{ state: string; pgrp: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Format: pid (comm) state ppid pgrp ... — comm may contain spaces and ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', pgrp: Number(fields[2]) };
  } catch {
    return undefined; // exited while we were scanning
  }
}

// Programs run detached, so they would outlive the node if it exits without
// stopping them (a crash, process.exit()). Last-resort cleanup on the way out.
const liveGroups = new Set<number>();
let exitHookInstalled = false;

export function trackGroup(pgid: number): void {
  liveGroups.add(pgid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const group of liveGroups) {
      try {
        process.kill(-group, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

export function untrackGroup(pgid: number): void {
  liveGroups.delete(pgid);
}
