// A minimal RFC 6455 WebSocket server side, no dependencies: the opening handshake,
// a frame codec (7/16/64-bit lengths, client masking), fragmentation, ping/pong and
// the close handshake. Enough for an echo service; not a general-purpose library.
import { createHash } from 'node:crypto';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa };

/** Answers the upgrade request; returns false (after replying 400) when it is not a valid one. */
export function acceptHandshake(req, socket) {
  const key = req.headers['sec-websocket-key'];
  const upgrade = String(req.headers.upgrade || '').toLowerCase();
  if (upgrade !== 'websocket' || typeof key !== 'string' || req.headers['sec-websocket-version'] !== '13') {
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return false;
  }
  const accept = createHash('sha1').update(key + GUID).digest('base64');
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\n' +
      'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  return true;
}

/** Encodes one unmasked (server-to-client) frame. */
export function encodeFrame(opcode, payload, fin = true) {
  const length = payload.length;
  let header;
  if (length < 126) {
    header = Buffer.alloc(2);
    header[1] = length;
  } else if (length < 0x10000) {
    header = Buffer.alloc(4);
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  header[0] = (fin ? 0x80 : 0) | opcode;
  return Buffer.concat([header, payload]);
}

/** Protocol violation: carries the close code to send. */
class ProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** A FIFO of received chunks, so frames split across TCP reads are reassembled cheaply. */
class ByteQueue {
  chunks = [];
  length = 0;

  push(chunk) {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Copies the first n bytes without consuming them (n is small: headers only). */
  peek(n) {
    if (this.chunks[0].length >= n) return this.chunks[0].subarray(0, n);
    const parts = [];
    let have = 0;
    for (const chunk of this.chunks) {
      if (have >= n) break;
      parts.push(chunk);
      have += chunk.length;
    }
    return Buffer.concat(parts).subarray(0, n);
  }

  take(n) {
    const parts = [];
    let needed = n;
    while (needed > 0) {
      const head = this.chunks[0];
      if (head.length <= needed) {
        parts.push(head);
        this.chunks.shift();
        needed -= head.length;
      } else {
        parts.push(head.subarray(0, needed));
        this.chunks[0] = head.subarray(needed);
        needed = 0;
      }
    }
    this.length -= n;
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, n);
  }
}

/**
 * Parses frames from the client and assembles messages. Callbacks:
 * onMessage(opcode, payload), onPing(payload), onClose(code, reason), onError(code, message).
 */
export class FrameParser {
  queue = new ByteQueue();
  fragments = [];
  fragmentBytes = 0;
  messageOpcode = -1;
  failed = false;

  constructor(handlers) {
    this.handlers = handlers;
  }

  push(chunk) {
    if (this.failed) return;
    this.queue.push(chunk);
    try {
      while (this.parseOne());
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.failed = true;
      this.handlers.onError(err.code, err.message);
    }
  }

  /** Consumes one complete frame if buffered; returns whether it did. */
  parseOne() {
    if (this.queue.length < 2) return false;
    const [b0, b1] = this.queue.peek(2);
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if (b0 & 0x70) throw new ProtocolError(1002, 'reserved bits set');
    if ((b1 & 0x80) === 0) throw new ProtocolError(1002, 'client frames must be masked');

    let length = b1 & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (this.queue.length < 4) return false;
      length = this.queue.peek(4).readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (this.queue.length < 10) return false;
      const big = this.queue.peek(10).readBigUInt64BE(2);
      if (big > BigInt(MAX_MESSAGE_BYTES)) throw new ProtocolError(1009, 'frame too large');
      length = Number(big);
      offset = 10;
    }
    const isControl = opcode >= 0x8;
    if (isControl && (length > 125 || !fin)) throw new ProtocolError(1002, 'invalid control frame');
    if (this.fragmentBytes + length > MAX_MESSAGE_BYTES) throw new ProtocolError(1009, 'message too large');
    if (this.queue.length < offset + 4 + length) return false;

    this.queue.take(offset);
    const mask = this.queue.take(4);
    const payload = Buffer.from(this.queue.take(length)); // own copy: we unmask in place
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    this.handleFrame(fin, opcode, payload);
    return true;
  }

  handleFrame(fin, opcode, payload) {
    switch (opcode) {
      case OP.ping:
        return this.handlers.onPing(payload);
      case OP.pong:
        return undefined;
      case OP.close: {
        if (payload.length === 1) throw new ProtocolError(1002, 'close payload of one byte');
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        return this.handlers.onClose(code, payload.subarray(2));
      }
      case OP.text:
      case OP.binary:
        if (this.messageOpcode !== -1) throw new ProtocolError(1002, 'new message before the last one finished');
        this.messageOpcode = opcode;
        break;
      case OP.continuation:
        if (this.messageOpcode === -1) throw new ProtocolError(1002, 'continuation without a message');
        break;
      default:
        throw new ProtocolError(1002, `unknown opcode ${opcode}`);
    }
    this.fragments.push(payload);
    this.fragmentBytes += payload.length;
    if (!fin) return undefined;

    const message = this.fragments.length === 1 ? this.fragments[0] : Buffer.concat(this.fragments, this.fragmentBytes);
    const messageOpcode = this.messageOpcode;
    this.fragments = [];
    this.fragmentBytes = 0;
    this.messageOpcode = -1;
    if (messageOpcode === OP.text && !isValidUtf8(message)) throw new ProtocolError(1007, 'invalid UTF-8 in text message');
    return this.handlers.onMessage(messageOpcode, message);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isValidUtf8(bytes) {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** Close frame payload: 2-byte code (+ optional reason). 1005/1006 must never be sent. */
export function closePayload(code) {
  if (code === 1005 || code === 1006) return Buffer.alloc(0);
  const payload = Buffer.alloc(2);
  payload.writeUInt16BE(code, 0);
  return payload;
}

/**
 * Runs an echo session on an upgraded socket: every message comes back with the same
 * type, pings get pongs, and a close is answered before the socket ends.
 */
export function echoSession(socket, head) {
  let closing = false;
  const send = (opcode, payload) => {
    // Backpressure: stop reading while the peer is slow to read our echoes.
    if (!socket.write(encodeFrame(opcode, payload))) {
      socket.pause();
      socket.once('drain', () => socket.resume());
    }
  };
  const close = (code) => {
    if (closing) return;
    closing = true;
    socket.end(encodeFrame(OP.close, closePayload(code)));
  };
  const parser = new FrameParser({
    onMessage: (opcode, payload) => !closing && send(opcode, payload),
    onPing: (payload) => !closing && send(OP.pong, payload),
    onClose: (code) => close(code === 1005 ? 1000 : code),
    onError: (code) => close(code),
  });
  socket.setNoDelay(true);
  socket.on('data', (chunk) => parser.push(chunk));
  socket.on('error', () => socket.destroy());
  if (head && head.length > 0) parser.push(head);
  return { close };
}
