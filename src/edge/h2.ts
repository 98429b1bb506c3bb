import http2, { type Http2ServerRequest, type Http2ServerResponse, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { createLogger } from '../common/index.js';
import type { ServerSettings } from '../config/index.js';
import type { MetricsRegistry } from '../metrics/index.js';
import { addressGroup } from './handshake-guard.js';

const log = createLogger('edge');

// Rapid reset (CVE-2023-44487): streams a client cancels before we answered. A
// browser cancels a few (navigation, aborted fetches); a flood cancels thousands.
// Counted per client address (IPv6: per /64), so a flood spread over many
// connections is caught too.
const CANCEL_BURST = 200;
const CANCEL_PER_S = 20;

/** Cancellation tokens of one client address, shared by its connections. */
interface CancelBucket {
  tokens: number;
  refilledAt: number;
  sessions: number;
}

export interface H2Handlers {
  request(req: IncomingMessage, res: ServerResponse): void;
  /** Extended CONNECT (RFC 8441): a WebSocket over this stream. */
  connect(req: IncomingMessage, res: ServerResponse, stream: ServerHttp2Stream): void;
}

/**
 * HTTP/2 on the HTTPS listeners: TLS sockets that negotiated 'h2' are handed to a
 * listener-less http2 server, whose compatibility requests go through the same
 * pipeline as HTTP/1.1 (programs are still reached over HTTP/1.1). Limits: concurrent
 * streams, header list size, rapid reset, settings and ping floods, idle sessions.
 */
export class H2Front {
  private readonly server: http2.Http2Server;
  private readonly sessions = new Set<Http2Session>();
  private readonly closedForAbuse;
  private readonly cancelBuckets = new Map<string, CancelBucket>();
  private draining = false;

  constructor(private readonly limits: ServerSettings['limits'], handlers: H2Handlers, metrics: MetricsRegistry) {
    this.closedForAbuse = metrics.counter('aleph_edge_h2_sessions_closed_total', 'HTTP/2 connections closed by the node, by reason');
    metrics.gauge('aleph_edge_h2_sessions', 'Open HTTP/2 connections').collect(() => [[{}, this.sessions.size]]);
    this.server = http2.createServer({
      settings: {
        maxConcurrentStreams: limits.h2MaxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderBytes,
        enableConnectProtocol: true,
      },
      maxSessionMemory: 32, // MiB of nghttp2 buffers per session
      maxOutstandingPings: 10,
      maxSettings: 32,
      maxSessionInvalidFrames: 100,
      maxSessionRejectedStreams: 100,
      // nghttp2's own rapid-reset limiter keeps its defaults (a burst of 1000, then 33/s,
      // per connection) as the backstop behind ours: a loaded node was seen to let
      // 30,000 cancels through before ours fired when the backstop was raised.
    } as http2.ServerOptions);
    this.server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
      // The compatibility response has no `destroyed`; the pipeline and the proxy ask it.
      Object.defineProperty(res, 'destroyed', { get: () => res.stream.destroyed, configurable: true });
      handlers.request(req as unknown as IncomingMessage, res as unknown as ServerResponse);
    });
    this.server.on('connect', (req: Http2ServerRequest, res: Http2ServerResponse) => {
      Object.defineProperty(res, 'destroyed', { get: () => res.stream.destroyed, configurable: true });
      handlers.connect(req as unknown as IncomingMessage, res as unknown as ServerResponse, res.stream);
    });
    this.server.on('session', (session: Http2Session) => this.watch(session));
    this.server.on('sessionError', (error: Error) => log.debug('http2 session error', { error: error.message }));
  }

  /** A TLS socket that negotiated 'h2'. */
  accept(socket: TLSSocket): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    this.server.emit('connection', socket);
  }

  /** Drain: GOAWAY to every session; open streams finish. */
  stopAccepting(): void {
    this.draining = true;
    for (const session of this.sessions) if (!session.closed) session.close();
  }

  closeAll(): void {
    this.draining = true;
    for (const session of this.sessions) session.destroy();
  }

  private watch(session: Http2Session): void {
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    session.on('error', () => undefined); // logged as sessionError; the session is gone
    let open = 0;
    const group = addressGroup(session.socket?.remoteAddress ?? '');
    let bucket = this.cancelBuckets.get(group);
    if (!bucket) {
      bucket = { tokens: CANCEL_BURST, refilledAt: performance.now(), sessions: 0 };
      this.cancelBuckets.set(group, bucket);
    }
    const cancels = bucket;
    cancels.sessions++;
    // Forgotten with the address's last connection: the map holds only connected clients.
    session.once('close', () => {
      if (--cancels.sessions === 0) this.cancelBuckets.delete(group);
    });
    // Idle: no stream open for h2_idle_timeout. A quiet SSE stream is not idle.
    session.setTimeout(this.limits.h2IdleTimeoutMs, () => {
      if (open === 0 && !session.closed) {
        this.closedForAbuse.inc({ reason: 'idle' });
        session.close();
      }
    });
    session.on('stream', (stream: ServerHttp2Stream) => {
      open++;
      stream.once('close', () => {
        open--;
        // Cancelled by the client before we had answered it.
        if (stream.rstCode === http2.constants.NGHTTP2_NO_ERROR || stream.headersSent) return;
        const now = performance.now();
        cancels.tokens = Math.min(CANCEL_BURST, cancels.tokens + ((now - cancels.refilledAt) / 1000) * CANCEL_PER_S);
        cancels.refilledAt = now;
        cancels.tokens -= 1;
        if (cancels.tokens < 0 && !session.closed && !session.destroyed) {
          this.closedForAbuse.inc({ reason: 'rapid_reset' });
          log.warn('http2 connection closed: rapid stream resets from this address', { client: group, connections: cancels.sessions });
          // GOAWAY, then close: a destroy() right after goaway() loses the frame.
          // No new stream is accepted; what is still open gets a second at most.
          session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
          session.close();
          setTimeout(() => session.destroy(), 1_000).unref();
        }
      });
    });
    // nghttp2 answers floods (settings, pings, invalid frames) with a session error.
    session.on('goaway', () => undefined);
  }
}
