import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { constants as h2constants, type ServerHttp2Stream } from 'node:http2';
import { Transform, type Duplex, type Readable, type TransformCallback } from 'node:stream';
import { createProxyServer, type ProxyServer, type ProxyTarget } from 'http-proxy-3';
import type { Dispatcher } from 'undici';
import { BadRequestError, EdgeError, PayloadTooLargeError, UpstreamError, UpstreamTimeoutError, createLogger, shortHash } from '../common/index.js';
import type { Endpoint } from '../drivers/index.js';
import type { Lease } from '../orchestrator/index.js';
import { downstreamResponseHeaders, upstreamRequestHeaders, upstreamRequestRawHeaders, type ForwardInfo } from './headers.js';
import { borrow, type Loan } from './program-socket.js';
import { ProgramResponseError, programFault, type ResponseProgress } from './program-fault.js';
import { UpstreamPools } from './upstream-pools.js';

const log = createLogger('proxy');

export interface ForwarderOptions {
  /** Idle keep-alive sockets to programs are closed after this; below common server keep-alive (5 s). */
  freeSocketTimeoutMs?: number;
}

/** Per-exchange limits the edge enforces while forwarding. */
export interface ForwardLimits {
  maxBodyBytes?: number;
  /** A response its client stops reading is cut after this (0: never). */
  sendTimeoutMs?: number;
}

/** How an exchange ended once something was sent to the client. */
export interface ForwardOutcome {
  status: number;
  /** False when the exchange was cut (client or program went away mid-response). */
  complete: boolean;
}

/**
 * Passes a request body through and fails once it exceeds `max` bytes. For bodies
 * without Content-Length (chunked), whose size is only known as they stream.
 */
class BodyLimit extends Transform {
  private seen = 0;

  constructor(private readonly max: number, private readonly exceeded: () => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.max) {
      // Not one byte past the limit goes upstream; the exchange is cut, not completed.
      this.exceeded();
      callback();
      return;
    }
    callback(null, chunk);
  }
}

interface Exchange {
  lease: Lease;
  /** True once the exchange's outcome is decided. */
  settled: boolean;
  settle(outcome: ForwardOutcome | Error): void;
  timer: NodeJS.Timeout | undefined;
  timedOut: boolean;
  /** Cuts the upstream side (HTTP: the undici request; WebSocket: the upgrade request). */
  abort: ((reason: Error) => void) | undefined;
  upgraded: boolean;
}

function target(endpoint: Endpoint): ProxyTarget {
  return endpoint.kind === 'tcp'
    ? { protocol: 'http:', host: endpoint.host, port: endpoint.port }
    : { protocol: 'http:', host: 'localhost', port: 0, socketPath: endpoint.path };
}

/** Maps a transport error talking to the program to the client-facing error. */
function classify(error: NodeJS.ErrnoException, exchange: Exchange, progress: ResponseProgress = NO_PROGRESS): { error: EdgeError; fatal: boolean } {
  if (exchange.timedOut || error instanceof UpstreamTimeoutError) {
    return { error: new UpstreamTimeoutError(`program did not answer within ${exchange.lease.requestTimeoutMs} ms`), fatal: false };
  }
  if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT') {
    return { error: new UpstreamError('program refused the connection'), fatal: true };
  }
  return { error: programFault(error, progress) ?? new ProgramResponseError('closed', 'program closed the connection'), fatal: false };
}

/**
 * Methods a request may be sent again with when the program closed the connection
 * without answering it: idempotent ones (RFC 9110 9.2.2), and only without a body.
 */
const RESENDABLE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** undici's codes for a connection closed (or reset) under a request. */
const CLOSED = new Set(['UND_ERR_SOCKET', 'ECONNRESET']);

const NO_PROGRESS: ResponseProgress = { headReceived: false, bodyLeft: -1, chunked: false };

/** A response's Content-Length as a number, or -1 when absent or not one plain value. */
function declaredLength(header: string | string[] | undefined): number {
  return typeof header === 'string' && /^\d{1,15}$/.test(header) ? Number(header) : -1;
}

/**
 * Ends a response that has started but cannot be completed so that the client sees
 * it incomplete: on HTTP/1.1 the connection is cut; on h2 the stream is reset with
 * INTERNAL_ERROR (a bare destroy resets it with NO_ERROR, which tells the client the
 * response was whole, so a cache or a download tool would keep the truncated bytes).
 */
function cut(res: ServerResponse): void {
  const stream = (res as ServerResponse & { stream?: ServerHttp2Stream }).stream;
  if (stream) {
    if (!stream.destroyed) stream.close(h2constants.NGHTTP2_INTERNAL_ERROR);
  } else {
    res.destroy();
  }
}

/** A request body to stream upstream, or null when the request has none. */
function requestBody(req: IncomingMessage): Readable | null {
  // HTTP/2 frames bodies itself: there is one unless the request ended with its headers.
  if (req.httpVersionMajor === 2) return (req as IncomingMessage & { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders ? null : req;
  if (req.headers['transfer-encoding'] !== undefined) return req;
  const length = req.headers['content-length'];
  return length !== undefined && length !== '0' ? req : null;
}

/**
 * HTTP and WebSocket forwarding to an execution's endpoint. Bodies stream in both
 * directions with backpressure; nothing is buffered whole.
 *
 * HTTP exchanges go through undici's dispatcher (one connection pool per endpoint):
 * on the bench upstream a worker forwards about 1.5x the keep-alive requests it
 * managed through http.request, and about 2x those through http-proxy-3's web
 * passes. WebSocket upgrades go through http-proxy-3.
 */
export class Forwarder {
  private readonly agent: http.Agent;
  private readonly pools: UpstreamPools;
  private readonly proxy: ProxyServer;
  private readonly exchanges = new WeakMap<IncomingMessage, Exchange>();
  /** Program sockets of WebSockets over HTTP/2 (their client side is an h2 stream). */
  private readonly h2Tunnels = new Set<Duplex>();

  constructor(options: ForwarderOptions = {}) {
    const keepAliveTimeoutMs = options.freeSocketTimeoutMs ?? 4_000;
    this.pools = new UpstreamPools({ keepAliveTimeoutMs });
    // Upgrades never return to a pool; the agent only opens their connections.
    this.agent = new http.Agent({ keepAlive: false });
    this.proxy = createProxyServer({ agent: this.agent, selfHandleResponse: true, xfwd: false, ws: true });
    this.proxy.on('proxyReqWs', (upstream, req) => this.onUpgradeRequest(upstream, req));
    // Client went away while the request was being sent: not an error worth a log line.
    this.proxy.on('econnreset', () => {});
    this.proxy.on('error', (error) => log.debug('unrouted proxy error', { error: error.message }));
  }

  /**
   * Forwards one HTTP exchange, with callbacks only (no promise per request). `done` is
   * called once: with the outcome when it ends, or with the error (an EdgeError, or
   * whatever failed unexpectedly) when nothing was sent to the client yet (edge/ writes
   * the error).
   */
  relay(req: IncomingMessage, res: ServerResponse, lease: Lease, info: ForwardInfo, limits: ForwardLimits, done: (outcome: ForwardOutcome | Error) => void): void {
    let exchange: Exchange | undefined;
    try {
      exchange = this.begin(lease, done);
      this.dispatch(req, res, lease, info, limits, exchange);
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      if (exchange) exchange.settle(failure);
      else done(failure);
    }
  }

  private dispatch(req: IncomingMessage, res: ServerResponse, lease: Lease, info: ForwardInfo, limits: ForwardLimits, exchange: Exchange): void {
    let body = requestBody(req);
    const max = limits.maxBodyBytes ?? 0;
    // A declared Content-Length was checked by edge/; a chunked body is counted as it streams.
    if (body && max > 0 && req.headers['content-length'] === undefined) {
      const limited = new BodyLimit(max, () => {
        if (exchange.settled) return;
        req.unpipe(limited);
        // Settled before the abort, so the abort is not taken for the program's failure.
        if (res.headersSent) {
          exchange.settle({ status: res.statusCode, complete: false });
          cut(res);
        } else {
          exchange.settle(new PayloadTooLargeError(`request body larger than ${max} bytes`));
        }
        exchange.abort?.(new PayloadTooLargeError('request body too large'));
      });
      body = req.pipe(limited);
    }
    // Body chunks are borrowed from the program socket's read buffer until written
    // out (see program-socket.ts); a response cut short gives back whatever it held.
    const lent = new Set<Loan>();
    // Send timeout: a client that takes none of the waiting bytes for this long (h2
    // window never opened, HTTP/1.1 socket never read) would hold the program's
    // connection for as long as it liked.
    let stalled: NodeJS.Timeout | undefined;
    const sendTimeoutMs = limits.sendTimeoutMs ?? 0;
    res.once('close', () => {
      clearTimeout(stalled);
      for (const loan of lent) loan.give();
      lent.clear();
      exchange.settle({ status: res.statusCode, complete: res.writableFinished });
      // The client left (or the response was cut): stop talking to the program.
      // Settled first, so the abort is not mistaken for the program's failure.
      if (!res.writableFinished) exchange.abort?.(new UpstreamError('client went away'));
    });
    req.once('error', () => exchange.abort?.(new UpstreamError('client request failed')));

    const giveBack = (loan: Loan) => () => {
      loan.give();
      lent.delete(loan);
    };
    let bodyLeft = -1;
    let headReceived = false;
    let resent = false;
    let chunked = false;
    let held: Buffer | undefined;
    let heldLoan: Loan | undefined;
    let flushScheduled = false;
    const write = (controller: Dispatcher.DispatchController) => {
      const chunk = held!;
      const loan = heldLoan!;
      held = undefined;
      heldLoan = undefined;
      if (!res.write(chunk, giveBack(loan))) {
        controller.pause();
        if (sendTimeoutMs > 0) {
          stalled = setTimeout(() => {
            if (exchange.settled) return;
            log.info('client read nothing for send_timeout: response cut', { hash: shortHash(lease.hash), timeout_ms: sendTimeoutMs, client: req.socket?.remoteAddress });
            exchange.settle({ status: res.statusCode, complete: false });
            cut(res);
            exchange.abort?.(new UpstreamError('client stopped reading'));
          }, sendTimeoutMs);
        }
        res.once('drain', () => {
          clearTimeout(stalled);
          controller.resume();
        });
      }
    };
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart: (controller) => {
        exchange.abort = (reason) => {
          if (controller.aborted) return;
          controller.abort(reason);
          this.pools.abortedOn(pool);
        };
        // Decided before a connection was free (timeout, body too large, client gone): nobody wants it.
        if (exchange.settled) exchange.abort(new UpstreamError('exchange already ended'));
      },
      onResponseStart: (controller, statusCode, headers, statusMessage) => {
        if (statusCode < 200) return; // interim responses (100, 103) are not relayed
        clearTimeout(exchange.timer);
        if (exchange.settled || res.destroyed) {
          exchange.abort?.(new UpstreamError('response no longer wanted'));
          return;
        }
        headReceived = true;
        bodyLeft = req.method === 'HEAD' ? -1 : declaredLength(headers['content-length']);
        chunked = req.method !== 'HEAD' && /\bchunked\b/i.test(String(headers['transfer-encoding'] ?? ''));
        const out = downstreamResponseHeaders(headers, lease.hash, lease.codeRef);
        // HTTP/2 has no reason phrase.
        if (req.httpVersionMajor === 2) res.writeHead(statusCode, out);
        else res.writeHead(statusCode, statusMessage, out);
      },
      onResponseData: (controller, chunk) => {
        if (res.destroyed) return exchange.abort?.(new UpstreamError('client went away'));
        if (bodyLeft >= 0) bodyLeft = Math.max(-1, bodyLeft - chunk.length);
        const loan = borrow(chunk, bodyLeft);
        lent.add(loan);
        // A chunk is held until the end of the tick: when the response ends in the
        // same read (most small responses), head, body and end leave in one write.
        if (held) write(controller);
        held = chunk;
        heldLoan = loan;
        if (!flushScheduled) {
          flushScheduled = true;
          process.nextTick(() => {
            flushScheduled = false;
            if (held && !res.destroyed) write(controller);
          });
        }
      },
      onResponseEnd: () => {
        const last = held;
        const loan = heldLoan;
        held = undefined;
        heldLoan = undefined;
        if (last) res.end(last, giveBack(loan!));
        else res.end();
      },
      onResponseError: (_controller, error: Error & { code?: string }) => {
        // We cut it ourselves (timeout, body too large, client gone): already settled.
        if (exchange.settled) return;
        if (!headReceived && !resent && body === null && RESENDABLE.has(req.method ?? '') && CLOSED.has(error.code ?? '')) {
          // Closed with nothing answered: a kept-alive connection the program hung up
          // on as this request went out. Sent once more (the pool opens a connection
          // for it if none is left).
          resent = true;
          pool.dispatch(options, handler);
          return;
        }
        if (error.code === 'UND_ERR_INVALID_ARG' && !res.headersSent) {
          // A request undici refuses to send as is (e.g. a header it does not allow).
          exchange.settle(new BadRequestError('request cannot be forwarded'));
          return;
        }
        const { error: edgeError, fatal } = classify(error, exchange, { headReceived, bodyLeft, chunked });
        lease.reportFailure(edgeError.message, fatal);
        if (res.headersSent) {
          // Too late to change the status: cut the response so the client sees it incomplete.
          const fault = edgeError instanceof ProgramResponseError ? edgeError.fault : undefined;
          log.warn('program response cut', { hash: shortHash(lease.hash), fault, reason: edgeError.message });
          cut(res);
          exchange.settle({ status: res.statusCode, complete: false });
        } else {
          exchange.settle(edgeError);
        }
      },
    };
    const pool = this.pools.for(lease.endpoint);
    const options: Dispatcher.DispatchOptions = {
      method: req.method as Dispatcher.HttpMethod,
      path: info.path,
      headers: upstreamRequestRawHeaders(req, info),
      body,
    };
    pool.dispatch(options, handler);
  }

  /**
   * Forwards a WebSocket upgrade. Resolves when the tunnel closes; rejects with an
   * EdgeError when the program could not be reached before the upgrade completed.
   */
  ws(req: IncomingMessage, socket: Duplex, head: Buffer, lease: Lease, info: ForwardInfo): Promise<ForwardOutcome> {
    return new Promise((resolve, reject) => {
      const exchange = this.begin(lease, (outcome) => {
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      });
      // What http-proxy-3 sends: a view of the client's request with the program's
      // target and headers (the request itself stays as received, for the access log).
      const upstream = Object.create(req, {
        url: { value: info.path },
        headers: { value: upstreamRequestHeaders(req.headers, info, true) },
      }) as IncomingMessage;
      this.exchanges.set(upstream, exchange);
      socket.once('close', () => exchange.settle({ status: exchange.upgraded ? 101 : 0, complete: exchange.upgraded }));
      // toProxy: the target goes out as it is; otherwise it is re-parsed as a URL (which re-encodes some characters).
      this.proxy.ws(upstream, socket, head, { target: target(lease.endpoint), toProxy: true }, (error) => {
        const { error: edgeError, fatal } = classify(error as NodeJS.ErrnoException, exchange);
        lease.reportFailure(edgeError.message, fatal);
        if (exchange.upgraded) {
          socket.destroy();
          exchange.settle({ status: 101, complete: false });
        } else {
          exchange.settle(edgeError);
        }
      });
    });
  }

  /**
   * A WebSocket opened over HTTP/2 (RFC 8441 extended CONNECT): the program gets an
   * HTTP/1.1 upgrade request (with a key of ours), and once it switches protocols
   * the h2 stream and the program's socket carry the WebSocket frames both ways.
   * Resolves when the tunnel closes; rejects with an EdgeError before the 101.
   */
  wsOverH2(req: IncomingMessage, stream: ServerHttp2Stream, lease: Lease, info: ForwardInfo): Promise<ForwardOutcome> {
    return new Promise((resolve, reject) => {
      const exchange = this.begin(lease, (outcome) => {
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      });
      const incoming: http.IncomingHttpHeaders = {};
      for (const name in req.headers) if (name.charCodeAt(0) !== 58) incoming[name] = req.headers[name];
      incoming.upgrade = 'websocket';
      const headers = upstreamRequestHeaders(incoming, info, true);
      headers.host = info.host;
      headers['sec-websocket-key'] = randomBytes(16).toString('base64');
      headers['sec-websocket-version'] = '13';
      const endpoint = lease.endpoint;
      const upstream = http.request({
        ...(endpoint.kind === 'tcp' ? { host: endpoint.host, port: endpoint.port } : { socketPath: endpoint.path }),
        method: 'GET', path: info.path, headers, agent: this.agent,
      });
      exchange.abort = (reason) => upstream.destroy(reason);
      stream.once('close', () => {
        exchange.settle({ status: exchange.upgraded ? 200 : 0, complete: exchange.upgraded });
        upstream.destroy();
      });
      upstream.once('upgrade', (res, socket, head) => {
        exchange.upgraded = true;
        clearTimeout(exchange.timer);
        if (stream.destroyed) return socket.destroy();
        const reply: Record<string, string | number> = { ':status': 200 };
        for (const name of ['sec-websocket-protocol', 'sec-websocket-extensions']) {
          const value = res.headers[name];
          if (typeof value === 'string') reply[name] = value;
        }
        stream.respond(reply);
        if (head.length > 0) stream.write(head);
        socket.pipe(stream);
        stream.pipe(socket);
        this.h2Tunnels.add(socket);
        socket.once('close', () => {
          this.h2Tunnels.delete(socket);
          stream.close();
        });
        socket.on('error', () => stream.close());
        stream.on('error', () => socket.destroy());
        stream.once('close', () => socket.destroy());
      });
      upstream.once('response', (res) => {
        // The program refused the upgrade: its status goes to the client as it is.
        res.resume();
        if (exchange.settled || stream.destroyed) return;
        const headers = downstreamResponseHeaders(res.headers, lease.hash, lease.codeRef);
        stream.respond({ ...headers, ':status': res.statusCode ?? 502 }, { endStream: true });
        exchange.settle({ status: res.statusCode ?? 502, complete: true });
      });
      upstream.once('error', (error: NodeJS.ErrnoException) => {
        if (exchange.settled) return;
        const { error: edgeError, fatal } = classify(error, exchange);
        lease.reportFailure(edgeError.message, fatal);
        if (exchange.upgraded) {
          stream.close();
          exchange.settle({ status: 200, complete: false });
        } else {
          exchange.settle(edgeError);
        }
      });
      upstream.end();
    });
  }

  /** Closes upstream connections (shutdown). */
  close(): void {
    this.pools.close();
    for (const socket of this.h2Tunnels) socket.destroy();
    this.agent.destroy();
  }

  private begin(lease: Lease, done: (outcome: ForwardOutcome | Error) => void): Exchange {
    const exchange: Exchange = {
      lease,
      settled: false,
      timer: undefined,
      timedOut: false,
      abort: undefined,
      upgraded: false,
      settle: (outcome) => {
        if (exchange.settled) return;
        exchange.settled = true;
        clearTimeout(exchange.timer);
        done(outcome);
      },
    };
    // request_timeout bounds the wait for the program's response head, not the
    // whole exchange: streams (SSE, downloads) may run as long as they flow.
    if (lease.requestTimeoutMs > 0) {
      exchange.timer = setTimeout(() => {
        exchange.timedOut = true;
        log.warn('program did not answer in time', { hash: shortHash(lease.hash), timeout_ms: lease.requestTimeoutMs });
        const error = new UpstreamTimeoutError(`program did not answer within ${lease.requestTimeoutMs} ms`);
        exchange.abort?.(error);
        exchange.settle(error);
      }, lease.requestTimeoutMs);
    }
    return exchange;
  }

  private onUpgradeRequest(upstream: http.ClientRequest, req: IncomingMessage): void {
    const exchange = this.exchanges.get(req);
    if (!exchange) return;
    exchange.abort = (reason) => upstream.destroy(reason);
    upstream.once('upgrade', () => {
      exchange.upgraded = true;
      clearTimeout(exchange.timer);
    });
    if (exchange.timedOut) upstream.destroy(new UpstreamTimeoutError('request timeout'));
  }
}
