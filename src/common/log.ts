// One logger for the node: human-readable single lines (`time LEVEL component message k=v`)
// on stderr. Level from ALEPH_EDGE_LOG (debug|info|warn|error|silent), default info.
//
// Logging never throws and never spins. Lines go to fd 2 with direct non-throwing
// writes, not through process.stderr: a stream that fails with EPIPE (journald
// restarting, `run | head`) is destroyed for good and reports an 'error' that, as an
// uncaught exception, would be logged to the same stderr again. Here a failed write
// drops the line and counts it; the next line tries again, so logging resumes as
// soon as the descriptor is writable (a reconnected journal stream, a new FIFO
// reader), starting with how many lines were lost.

import { writeSync } from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, string | number | boolean | null | undefined>;
export interface LogRecord { time: Date; level: LogLevel; component: string; message: string; fields: LogFields }
export type LogSink = (record: LogRecord) => void;

const ORDER: Record<LogLevel | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

function levelFromEnv(): number {
  const name = (process.env.ALEPH_EDGE_LOG ?? 'info').toLowerCase();
  return ORDER[name as LogLevel] ?? ORDER.info;
}

let threshold = levelFromEnv();
const sinks = new Set<LogSink>();

function formatValue(value: LogFields[string]): string {
  if (value === undefined || value === null) return '-';
  const text = String(value);
  return /[\s"=]/.test(text) ? JSON.stringify(text) : text;
}

export function formatRecord(record: LogRecord): string {
  let line = `${record.time.toISOString()} ${record.level.toUpperCase().padEnd(5)} ${record.component.padEnd(12)} ${record.message}`;
  for (const [key, value] of Object.entries(record.fields)) {
    if (value !== undefined) line += ` ${key}=${formatValue(value)}`;
  }
  return line;
}

/** Lines kept while the descriptor is full (EAGAIN) before new ones are dropped. */
const MAX_PENDING_BYTES = 1 << 20;
const RETRY_MS = 50;

/**
 * Writes whole lines to a file descriptor without ever throwing. A full pipe
 * (EAGAIN: fd 2 is non-blocking once Node opened process.stderr) keeps lines
 * in a bounded queue retried on a timer; any other failure drops the line.
 */
export class LineWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Lines lost since the last successful write (reported in the next line). */
  private lost = 0;
  /** Lines lost in total (the aleph_edge_log_lines_dropped_total counter). */
  dropped = 0;

  constructor(private readonly fd: number, private readonly write: (fd: number, data: Buffer) => number = writeSync) {}

  line(text: string): void {
    const data = Buffer.from(text + '\n');
    if (this.pendingBytes + data.length > MAX_PENDING_BYTES) return this.drop();
    this.pending.push(data);
    this.pendingBytes += data.length;
    this.flush();
  }

  private drop(count = 1): void {
    this.dropped += count;
    this.lost += count;
  }

  private flush(): void {
    while (this.pending.length > 0) {
      if (this.lost > 0 && !this.announceLoss()) return;
      const head = this.pending[0]!;
      let written: number;
      try {
        written = this.write(this.fd, head);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return this.retryLater();
        // EPIPE, EBADF, EIO...: this line is lost; the next one tries again.
        this.pending.shift();
        this.pendingBytes -= head.length;
        this.drop();
        continue;
      }
      this.pendingBytes -= written;
      if (written >= head.length) this.pending.shift();
      else this.pending[0] = head.subarray(written);
    }
  }

  /** Writes the "lines dropped" notice; false when the descriptor still fails. */
  private announceLoss(): boolean {
    const notice = Buffer.from(formatRecord({
      time: new Date(), level: 'warn', component: 'log', message: 'log lines dropped while stderr was not writable', fields: { lines: this.lost },
    }) + '\n');
    try {
      // A short write of the notice is left as it is: it is far below PIPE_BUF.
      this.write(this.fd, notice);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') this.retryLater();
      else this.dropPending();
      return false;
    }
    this.lost = 0;
    return true;
  }

  /** The descriptor is broken: what waits is lost too (never retried in a loop). */
  private dropPending(): void {
    this.drop(this.pending.length);
    this.pending = [];
    this.pendingBytes = 0;
  }

  private retryLater(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, RETRY_MS);
    this.timer.unref();
  }
}

const stderrWriter = new LineWriter(2);

/** Log lines lost because stderr could not take them (never thrown, never retried in a loop). */
export function droppedLogLines(): number {
  return stderrWriter.dropped;
}

/**
 * Keeps a failing stdout/stderr (EPIPE) from becoming an uncaught exception: Node
 * and its libraries may still write to process.stdout/stderr directly. Their
 * failures are counted with the logger's.
 */
export function guardStdio(): void {
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.listenerCount('error') > 0) continue;
    stream.on('error', () => {
      stderrWriter.dropped++;
    });
  }
}

function writeStderr(record: LogRecord): void {
  stderrWriter.line(formatRecord(record));
}

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(component: string): Logger;
}

export function createLogger(component: string): Logger {
  const emit = (level: LogLevel, message: string, fields: LogFields = {}) => {
    if (ORDER[level] < threshold && sinks.size === 0) return;
    const record: LogRecord = { time: new Date(), level, component, message, fields };
    for (const sink of sinks) sink(record);
    if (ORDER[level] >= threshold) writeStderr(record);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (name) => createLogger(`${component}.${name}`),
  };
}

/** Extra sinks see every record regardless of level (tests capture logs this way). */
export function addLogSink(sink: LogSink): () => void {
  sinks.add(sink);
  return () => sinks.delete(sink);
}

/** Whether a record of this level goes anywhere: lets a hot path skip building it. */
export function logEnabled(level: LogLevel): boolean {
  return ORDER[level] >= threshold || sinks.size > 0;
}

export function setLogLevel(level: LogLevel | 'silent'): void {
  threshold = ORDER[level];
}

/** Short hash for log lines: first 12 hex chars. */
export function shortHash(hash: string): string {
  return hash.slice(0, 12);
}
