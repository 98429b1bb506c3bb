// What each program printed lately (process stdout/stderr, a VM's serial console),
// kept in memory so its owner can read it (/control/machine/{ref}/logs) and follow it
// live (stream_logs). Bounded three ways: lines and bytes per program, and programs
// (the least recently written one goes first). The node's own log still gets every
// line (the drivers log them); this is the owner's view, not the record.

import type { OutputStream } from '../drivers/index.js';

export interface LogEntry {
  /** Milliseconds since the epoch, when the node read the line. */
  timestamp: number;
  stream: OutputStream;
  line: string;
  /** The execution that printed it (a program's buffer spans its restarts). */
  execution: string;
  /** Increases with every line the node keeps (any program): a reader asks for lines after the last it saw. */
  seq: number;
}

export interface LogLimits {
  linesPerProgram: number;
  bytesPerProgram: number;
  programs: number;
}

export const DEFAULT_LOG_LIMITS: LogLimits = { linesPerProgram: 1000, bytesPerProgram: 128 * 1024, programs: 128 };

export type LogListener = (entry: LogEntry) => void;

class Ring {
  entries: LogEntry[] = [];
  /** Index of the oldest entry (entries is used as a circular buffer once full). */
  head = 0;
  bytes = 0;
  readonly listeners = new Set<LogListener>();

  push(entry: LogEntry, limits: LogLimits): void {
    const size = entrySize(entry);
    if (this.entries.length < limits.linesPerProgram && this.head === 0) {
      this.entries.push(entry);
    } else {
      this.bytes -= entrySize(this.entries[this.head]!);
      this.entries[this.head] = entry;
      this.head = (this.head + 1) % this.entries.length;
    }
    this.bytes += size;
    while (this.bytes > limits.bytesPerProgram && this.entries.length > 1) this.dropOldest();
  }

  list(): LogEntry[] {
    return [...this.entries.slice(this.head), ...this.entries.slice(0, this.head)];
  }

  private dropOldest(): void {
    // Linearize first so the array stays a plain queue while it shrinks.
    if (this.head !== 0) {
      this.entries = this.list();
      this.head = 0;
    }
    this.bytes -= entrySize(this.entries.shift()!);
  }
}

function entrySize(entry: LogEntry): number {
  return entry.line.length + 32;
}

export class ProgramLogs {
  /** Insertion order = least recently written first. */
  private readonly rings = new Map<string, Ring>();
  private seq = 0;

  constructor(private readonly limits: LogLimits = DEFAULT_LOG_LIMITS) {}

  append(hash: string, execution: string, stream: OutputStream, line: string): void {
    let ring = this.rings.get(hash);
    if (ring) this.rings.delete(hash);
    else ring = new Ring();
    this.rings.set(hash, ring);
    const entry: LogEntry = { timestamp: Date.now(), stream, line, execution, seq: ++this.seq };
    ring.push(entry, this.limits);
    for (const listener of ring.listeners) listener(entry);
    this.evict();
  }

  /** The program's recent lines, oldest first ([] when it printed nothing lately). */
  lines(hash: string): LogEntry[] {
    return this.rings.get(hash)?.list() ?? [];
  }

  /** Calls the listener with each new line of the program until the returned function is called. */
  subscribe(hash: string, listener: LogListener): () => void {
    let ring = this.rings.get(hash);
    if (!ring) {
      ring = new Ring();
      this.rings.set(hash, ring);
      this.evict();
    }
    const held = ring;
    held.listeners.add(listener);
    return () => {
      held.listeners.delete(listener);
    };
  }

  private evict(): void {
    if (this.rings.size <= this.limits.programs) return;
    for (const [hash, ring] of this.rings) {
      if (this.rings.size <= this.limits.programs) break;
      // A followed program keeps its buffer; its listener would otherwise hear nothing more.
      if (ring.listeners.size === 0) this.rings.delete(hash);
    }
  }
}
