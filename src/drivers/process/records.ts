// Per-execution records on disk, so programs survive no longer than the node that
// started them. Programs run in their own process groups, which a node killed by
// SIGKILL (or the OOM killer) cannot stop; the next node reads the records at
// start-up and kills what is left. A record names the group leader by pid, start
// time and boot id, so a recycled pid is never mistaken for one of our programs.

import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bootId, procStat, type Logger } from '../../common/index.js';

interface ExecutionRecord {
  pid: number; // also the process group id
  start_time: string; // /proc/<pid>/stat field 22 (clock ticks since boot)
  boot_id: string;
  hash: string;
}

function kill(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

export class ExecutionRecords {
  private readonly boot = bootId();

  constructor(private readonly dir: string, private readonly log: Logger) {
    mkdirSync(dir, { recursive: true, mode: 0o750 });
  }

  /** Records a started program (its group is `pid`). Best effort: a failure is logged. */
  add(pid: number, hash: string): void {
    const stat = procStat(pid);
    if (!stat) return; // already gone
    const record: ExecutionRecord = { pid, start_time: stat.startTime, boot_id: this.boot, hash };
    try {
      writeFileSync(this.file(pid), JSON.stringify(record) + '\n', { mode: 0o640 });
    } catch (error) {
      this.log.warn('cannot write execution record', { dir: this.dir, error: (error as Error).message });
    }
  }

  /** The program's group is gone: forget it. */
  remove(pid: number): void {
    rmSync(this.file(pid), { force: true });
  }

  /**
   * Kills the process groups of programs recorded by a previous node of this boot
   * that are still running, and clears every record. Synchronous: runs once, before
   * the node serves anything. Returns the number of processes killed.
   */
  reap(): number {
    let killed = 0;
    let entries: string[];
    try {
      entries = readdirSync(this.dir).filter((name) => /^\d+\.json$/.test(name));
    } catch {
      return 0;
    }
    for (const name of entries) {
      const file = path.join(this.dir, name);
      try {
        const record = JSON.parse(readFileSync(file, 'utf8')) as ExecutionRecord;
        if (record.boot_id === this.boot && Number.isInteger(record.pid) && record.pid > 1) killed += this.killLeftovers(record);
      } catch (error) {
        this.log.warn('unreadable execution record, removed', { file, error: (error as Error).message });
      }
      rmSync(file, { force: true });
    }
    if (killed > 0) this.log.warn('killed programs left running by a previous node', { processes: killed });
    return killed;
  }

  private killLeftovers(record: ExecutionRecord): number {
    const leader = procStat(record.pid);
    // A different process now holds the pid: not ours, whatever its group.
    if (leader && leader.startTime !== record.start_time) return 0;
    if (leader && leader.state !== 'Z' && leader.state !== 'X') {
      const members = this.groupMembers(record.pid, record.start_time).length;
      return kill(-record.pid, 'SIGKILL') ? Math.max(members, 1) : 0;
    }
    // The leader exited (or is a zombie nobody reaped yet) but its children may still
    // run in its group: they started after it, and the group id cannot be reused
    // while they are alive.
    let killed = 0;
    for (const pid of this.groupMembers(record.pid, record.start_time)) if (kill(pid, 'SIGKILL')) killed++;
    return killed;
  }

  /** Live processes in group `pgid` that started no earlier than the recorded leader. */
  private groupMembers(pgid: number, leaderStart: string): number[] {
    const out: number[] = [];
    let entries: string[];
    try {
      entries = readdirSync('/proc');
    } catch {
      return out;
    }
    for (const entry of entries) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = procStat(entry);
      if (!stat || stat.pgrp !== pgid || stat.state === 'Z' || stat.state === 'X') continue;
      if (BigInt(stat.startTime || '0') < BigInt(leaderStart || '0')) continue;
      out.push(Number(entry));
    }
    return out;
  }

  private file(pid: number): string {
    return path.join(this.dir, `${pid}.json`);
  }
}
