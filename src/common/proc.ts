// Process identity from /proc: a pid alone can be recycled, a pid with its start
// time (and the boot it belongs to) cannot.

import { readFileSync } from 'node:fs';

export interface ProcStat {
  state: string;
  pgrp: number;
  /** /proc/<pid>/stat field 22: clock ticks since boot. */
  startTime: string;
}

export function procStat(pid: number | string): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // pid (comm) state ppid pgrp ... — comm may contain spaces and ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', pgrp: Number(fields[2]), startTime: fields[19] ?? '' };
  } catch {
    return undefined;
  }
}

export function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

/** True when `pid` runs and is the process that started at `startTime` during boot `boot`. */
export function sameProcess(pid: number, startTime: string, boot: string): boolean {
  if (boot !== bootId()) return false;
  const stat = procStat(pid);
  return stat !== undefined && stat.startTime === startTime && stat.state !== 'Z' && stat.state !== 'X';
}
