// Program stdout/stderr -> node log, one record per line. A program can print
// without limit, so memory and log volume are bounded here: a partial line never
// exceeds maxLineBytes (the rest of an over-long line is cut), and a token bucket
// caps lines per second; excess lines are counted and reported, not queued.

import type { Readable } from 'node:stream';

export interface OutputLimits {
  /** Longer lines are truncated to this many bytes. */
  maxLineBytes: number;
  /** Sustained lines per second logged per program (both streams together). */
  linesPerSecond: number;
  /** Lines that may be logged in a burst above the sustained rate. */
  burstLines: number;
}

export const DEFAULT_OUTPUT_LIMITS: OutputLimits = {
  maxLineBytes: 4096,
  linesPerSecond: 200,
  burstLines: 1000,
};

export type StreamName = 'stdout' | 'stderr';

export interface OutputSink {
  line(stream: StreamName, text: string): void;
  /** Called (outside the rate limit) when lines were dropped since the last report. */
  dropped(count: number): void;
}

const NEWLINE = 0x0a;

/** Dropped-line reports are at least this far apart (the last one comes at stream end). */
const REPORT_INTERVAL_MS = 1000;

/** Token bucket shared by a program's streams. */
export class LineRateLimiter {
  private tokens: number;
  private last: number;
  private droppedCount = 0;
  private lastReport = -Infinity;

  constructor(
    private readonly limits: OutputLimits,
    private readonly sink: OutputSink,
    /** Milliseconds from a monotonic source; tests pass their own. */
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = limits.burstLines;
    this.last = now();
  }

  /** Logs the line when the budget allows, else counts it as dropped. */
  offer(stream: StreamName, text: string): void {
    const now = this.now();
    this.tokens = Math.min(this.limits.burstLines, this.tokens + ((now - this.last) / 1000) * this.limits.linesPerSecond);
    this.last = now;
    if (this.tokens < 1) {
      this.droppedCount++;
      return;
    }
    this.tokens -= 1;
    // Under a sustained flood a token frees up every few ms: report drops at most
    // once per REPORT_INTERVAL_MS, not once per line let through.
    if (now - this.lastReport >= REPORT_INTERVAL_MS) this.flushDropped();
    this.sink.line(stream, text);
  }

  /** Reports lines dropped so far (on recovery and when the streams end). */
  flushDropped(): void {
    if (this.droppedCount === 0) return;
    const count = this.droppedCount;
    this.droppedCount = 0;
    this.lastReport = performance.now();
    this.sink.dropped(count);
  }
}

/** Splits one stream into lines; holds at most maxLineBytes of a pending line. */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** True while discarding the tail of an over-long line up to its newline. */
  private skipping = false;

  constructor(
    private readonly stream: StreamName,
    private readonly maxLineBytes: number,
    private readonly emit: (stream: StreamName, text: string) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl;
      if (!this.skipping) this.append(chunk.subarray(start, end));
      if (nl === -1) break;
      if (this.skipping) this.skipping = false;
      else this.flushLine();
      start = nl + 1;
    }
  }

  /** Emits a final unterminated line, if any. */
  end(): void {
    if (this.pendingBytes > 0 && !this.skipping) this.flushLine();
    this.pending = [];
    this.pendingBytes = 0;
    this.skipping = false;
  }

  private append(part: Buffer): void {
    const room = this.maxLineBytes - this.pendingBytes;
    if (part.length <= room) {
      if (part.length > 0) {
        // Copy: the chunk is a view into a buffer we should not pin.
        this.pending.push(Buffer.from(part));
        this.pendingBytes += part.length;
      }
      return;
    }
    if (room > 0) this.pending.push(Buffer.from(part.subarray(0, room)));
    this.pendingBytes = this.maxLineBytes;
    this.flushLine(true);
    this.skipping = true;
  }

  private flushLine(truncated = false): void {
    let text = Buffer.concat(this.pending, this.pendingBytes).toString('utf8');
    this.pending = [];
    this.pendingBytes = 0;
    if (text.endsWith('\r')) text = text.slice(0, -1);
    text = escapeControls(text);
    this.emit(this.stream, truncated ? `${text}…[truncated]` : text);
  }
}

// Control characters (ESC sequences, bare CR) could forge or garble log lines.
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

function escapeControls(text: string): string {
  return text.replace(CONTROLS, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * Wires a child's stdout/stderr to the sink. Data is consumed as it arrives
 * (never paused), so a flooding program cannot make us buffer.
 */
export function captureOutput(
  streams: { stdout: Readable | null; stderr: Readable | null },
  sink: OutputSink,
  limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
): void {
  const limiter = new LineRateLimiter(limits, sink);
  let open = 0;
  const attach = (name: StreamName, stream: Readable | null) => {
    if (!stream) return;
    open++;
    const splitter = new LineSplitter(name, limits.maxLineBytes, (s, text) => limiter.offer(s, text));
    stream.on('data', (chunk: Buffer) => splitter.push(chunk));
    // Errors on a pipe mean the program side went away; there is nothing to recover.
    stream.on('error', () => undefined);
    stream.once('close', () => {
      splitter.end();
      if (--open === 0) limiter.flushDropped();
    });
  };
  attach('stdout', streams.stdout);
  attach('stderr', streams.stderr);
}
