// Follows the API's message stream (/api/ws0/messages, one JSON message per
// WebSocket text frame) and hands each message to a callback. Reconnects with
// exponential backoff (reset once a connection has stayed up); a connection that
// goes quiet is detected by ping/pong.

import WebSocket from 'ws';
import { createLogger } from '../../common/index.js';

const log = createLogger('programs.stream');

export interface StreamOptions {
  /** Called per connection attempt: the URL to connect to (startDate = now). */
  url: () => string;
  onMessage: (message: unknown) => void;
  /** Called on every (re)connection; missed messages may exist across a reconnect. */
  onConnected?: () => void;
  minBackoffMs?: number; // default 500 ms
  maxBackoffMs?: number; // default 30 s
  pingIntervalMs?: number; // default 30 s
}

export class MessageStream {
  private socket: WebSocket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private failures = 0;
  connected = false;

  constructor(private readonly options: StreamOptions) {}

  start(): void {
    this.connect();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.socket?.terminate();
  }

  private connect(): void {
    if (this.closed) return;
    const url = this.options.url();
    const socket = new WebSocket(url, { handshakeTimeout: 10_000 });
    this.socket = socket;
    let alive = true;
    let ping: NodeJS.Timeout | undefined;
    socket.on('open', () => {
      this.failures = 0;
      this.connected = true;
      log.info('following the Aleph message stream');
      this.options.onConnected?.();
      ping = setInterval(() => {
        if (!alive) return socket.terminate();
        alive = false;
        socket.ping();
      }, this.options.pingIntervalMs ?? 30_000);
      ping.unref();
    });
    socket.on('pong', () => { alive = true; });
    socket.on('message', (data, isBinary) => {
      alive = true;
      if (isBinary) return;
      let message: unknown;
      try {
        message = JSON.parse(data.toString());
      } catch {
        return;
      }
      try {
        this.options.onMessage(message);
      } catch (error) {
        log.warn('stream message handler failed', { error: (error as Error).message });
      }
    });
    socket.on('error', (error) => log.debug('message stream error', { error: error.message }));
    socket.on('close', () => {
      clearInterval(ping);
      this.connected = false;
      if (this.closed) return;
      const min = this.options.minBackoffMs ?? 500;
      const delay = Math.min(this.options.maxBackoffMs ?? 30_000, min * 2 ** this.failures++);
      log.warn('Aleph message stream closed, reconnecting', { retry_in_ms: delay });
      this.timer = setTimeout(() => this.connect(), delay);
      this.timer.unref();
    });
  }
}
