// Connections to programs that read into reused buffers.
//
// A plain net.Socket reads into a fresh 64 KiB buffer every time. Proxying large
// bodies that is ~16 external allocations per MiB, and V8 answers the external
// memory with back-to-back mark-compacts (a quarter of a worker on the 1 MiB
// benchmark). These sockets read with `onread` into buffers taken from a small free
// list of their endpoint's, and a buffer goes back to that list only once nothing can
// read it any more:
//
// - what was read into it can hold no part of an unfinished response head: it was
//   all body bytes of a response of known length, or a whole response head framed
//   by a Content-Length and at most that much body (undici keeps views of a partial
//   head across reads, never of body bytes it has handed on), and
// - undici has taken it from the socket's queue (a paused parser puts the rest
//   back there), and
// - every body chunk the forwarder got from it has been written out to the client:
//   the forwarder borrows chunks and gives them back from its write callbacks.
//
// Anything else (a head split over reads, chunked or close-delimited bodies, a read
// past a body) leaves its buffer to the GC, as Node does for every read: the fallback
// is the old behaviour. Buffers are never shared between endpoints, so a program
// only ever sees its own bytes again, and only past the end of what was read.

import net from 'node:net';
import type { buildConnector } from 'undici';

const READ_BUFFER_BYTES = 64 * 1024;
/**
 * A read this small that is not known body is copied out of the read buffer, which
 * then takes the next read: a small response's head and body cost a copy into Node's
 * shared pool, instead of the head scan, a buffer record and a settle tick per read.
 */
const SMALL_READ_BYTES = 4 * 1024;
/** Free buffers an endpoint keeps; more are left to the GC. */
const FREE_BUFFERS_PER_ENDPOINT = 8;
const CONNECT_TIMEOUT_MS = 10_000;
const KEEPALIVE_PROBE_DELAY_MS = 60_000;

/** One buffer, what was read into it, and the chunks of it lent out. */
interface ReadBuffer {
  readonly bytes: Buffer;
  readonly reader: BufferedReader;
  /** Body chunks of it the forwarder has not given back. */
  lent: number;
  /** Data read into it may still be in the socket's queue. */
  queued: boolean;
}

/** Buffers of program sockets by their memory: how a chunk is recognised as lent. */
const buffers = new WeakMap<ArrayBufferLike, ReadBuffer>();

/** Connections made, reads, and reads that needed a new buffer (tests look at these). */
export const readBufferStats = { connections: 0, reads: 0, allocated: 0 };

/** The free buffers of one endpoint (one undici pool). */
class FreeBuffers {
  private readonly free: Buffer[] = [];

  take(): Buffer | undefined {
    return this.free.pop();
  }

  giveBack(bytes: Buffer): void {
    if (this.free.length < FREE_BUFFERS_PER_ENDPOINT) this.free.push(bytes);
  }
}

/** The reading side of one program connection. */
class BufferedReader {
  socket!: net.Socket;
  /** The buffer the next read goes into. */
  private current: ReadBuffer | undefined;
  /** Buffers with data, to go back to the free list once done with. */
  private readonly pending: ReadBuffer[] = [];
  /**
   * Bytes of the current response body the forwarder has not had yet (-1: no body of
   * known length in progress). Set by the forwarder with each chunk it borrows.
   */
  bodyLeft = -1;
  private settleScheduled = false;
  /** The last read was copied out: the current buffer takes the next read too. */
  private keepCurrent = false;

  constructor(private readonly free: FreeBuffers) {}

  /** `onread.buffer`: called before the first read, then after every read. */
  nextBuffer(): Buffer {
    if (this.keepCurrent && this.current) {
      this.keepCurrent = false;
      return this.current.bytes;
    }
    const bytes = this.free.take() ?? allocate();
    const record: ReadBuffer = { bytes, reader: this, lent: 0, queued: false };
    buffers.set(bytes.buffer, record);
    this.current = record;
    return bytes;
  }

  /** `onread.callback`: `length` new bytes at the start of `bytes`. */
  onRead(length: number, bytes: Buffer): boolean {
    readBufferStats.reads++;
    const record = this.current;
    const queuedBefore = this.socket.readableLength;
    // Not in a body of known length (whose reads are reused below) and nothing queued:
    // the copy is all undici ever sees of this read. bodyLeft stays as it is (<= 0),
    // which only ever makes the next read's decision more conservative.
    if (length <= SMALL_READ_BYTES && this.bodyLeft <= 0 && queuedBefore === 0 && record?.bytes === bytes) {
      this.keepCurrent = true;
      const copy = Buffer.allocUnsafe(length);
      bytes.copy(copy, 0, 0, length);
      return this.socket.push(copy);
    }
    let reusable = this.bodyLeft > 0 && length <= this.bodyLeft - queuedBefore;
    if (!reusable) {
      this.bodyLeft = -1;
      reusable = queuedBefore === 0 && headEndsIn(bytes, length);
    }
    const more = this.socket.push(bytes.subarray(0, length));
    // Only pending buffers go back to the free list. One that is not reused stays
    // known until the GC takes it: its body chunks still say how much body is left.
    if (record && record.bytes === bytes && reusable) {
      record.queued = true;
      this.pending.push(record);
      // Queued after the push's 'readable' tick, in which undici parses what was pushed.
      this.scheduleSettle();
    }
    return more;
  }

  /** A lent chunk was written out, or never will be. */
  returned(record: ReadBuffer): void {
    record.lent--;
    if (record.lent === 0) this.settle();
  }

  /**
   * The connection closed. Its buffer for the next read was never read into (every
   * read is followed by `nextBuffer`), so it goes straight back.
   */
  closed(): void {
    const record = this.current;
    this.current = undefined;
    if (record) {
      buffers.delete(record.bytes.buffer);
      this.free.giveBack(record.bytes);
    }
    this.settle();
  }

  private scheduleSettle(): void {
    if (this.settleScheduled) return;
    this.settleScheduled = true;
    process.nextTick(() => {
      this.settleScheduled = false;
      this.settle();
    });
  }

  /** Gives back every pending buffer undici has taken and the forwarder is done with. */
  private settle(): void {
    if (this.pending.length === 0) return;
    // Everything pushed so far has been parsed (a socket that is gone parses nothing more).
    if (this.socket.readableLength === 0 && !this.socket.destroyed) for (const record of this.pending) record.queued = false;
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const record = this.pending[i]!;
      if (record.queued || record.lent > 0) continue;
      this.pending.splice(i, 1);
      buffers.delete(record.bytes.buffer);
      this.free.giveBack(record.bytes);
    }
  }
}

function allocate(): Buffer {
  readBufferStats.allocated++;
  return Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
}

const HEAD_END = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.[01] [2-9]\d\d[ \r]/;
const FOLDED_OR_CHUNKED = /\r\n[ \t]|\r\ntransfer-encoding:/i;
const CONTENT_LENGTH = /\r\ncontent-length:([^\r]*)/gi;
const LENGTH_VALUE = /^[ \t]*(\d{1,15})[ \t]*$/;

/**
 * True when the `length` bytes read start with a whole HTTP/1.1 response head (a
 * final status, framed by its one Content-Length) followed by no more than that
 * many body bytes: parsing them leaves no partial head behind. Runs on every read
 * that is not body; conservative: a false answer only costs the buffer.
 */
export function headEndsIn(bytes: Buffer, length: number): boolean {
  // "HTTP/1.1 200 " at least; interim 1xx responses come before another head.
  if (length < 16 || bytes[0] !== 0x48) return false;
  const headEnd = bytes.subarray(0, length).indexOf(HEAD_END);
  if (headEnd < 0) return false;
  // With the final CRLF, so that every header line starts with CRLF.
  const head = bytes.toString('latin1', 0, headEnd + 2);
  if (!STATUS_LINE.test(head) || FOLDED_OR_CHUNKED.test(head)) return false;
  let declared = -1;
  for (const match of head.matchAll(CONTENT_LENGTH)) {
    const value = LENGTH_VALUE.exec(match[1]!);
    if (!value || declared >= 0) return false; // not one plain number
    declared = Number(value[1]);
  }
  return declared >= 0 && length - (headEnd + HEAD_END.length) <= declared;
}

/** A chunk of a response body lent to the forwarder until it is written out. */
export interface Loan {
  /** Once written out, or once it never will be. Only the first call counts. */
  give(): void;
}

const NO_LOAN: Loan = { give() {} };

/**
 * The forwarder took `chunk` of a response body (undici's onResponseData) and
 * `bodyLeft` bytes of that body follow it (-1: length unknown). Chunks that are not
 * from a program socket's buffer get a loan that does nothing.
 */
export function borrow(chunk: Uint8Array, bodyLeft: number): Loan {
  const record = buffers.get(chunk.buffer);
  if (!record) return NO_LOAN;
  record.lent++;
  record.reader.bodyLeft = bodyLeft;
  let given = false;
  return {
    give() {
      if (given) return;
      given = true;
      record.reader.returned(record);
    },
  };
}

type ProgramConnector = buildConnector.connector;

/**
 * undici's `connect` for one program endpoint: what its own connector does for plain
 * HTTP (keep-alive probes, no Nagle, a connect timeout), with reused read buffers.
 */
export function programConnector(target: { host: string; port: number } | { path: string }): ProgramConnector {
  const free = new FreeBuffers();
  return (_options, callback) => {
    readBufferStats.connections++;
    const reader = new BufferedReader(free);
    const socket = new net.Socket({
      onread: {
        buffer: () => reader.nextBuffer(),
        callback: (length: number, bytes: Uint8Array) => reader.onRead(length, bytes as Buffer),
      },
    });
    reader.socket = socket;
    let done = false;
    const finish = (error: Error | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (error) callback(error, null);
      else callback(null, socket);
    };
    const timer = setTimeout(() => {
      const error = Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' });
      socket.destroy(error);
      finish(error);
    }, CONNECT_TIMEOUT_MS);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_PROBE_DELAY_MS);
    socket.once('connect', () => finish(null));
    socket.on('error', (error) => finish(error));
    socket.once('close', () => reader.closed());
    if ('path' in target) socket.connect({ path: target.path });
    else socket.connect({ host: target.host, port: target.port });
    return socket;
  };
}
