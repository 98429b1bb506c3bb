import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { Transform, type Duplex, type TransformCallback } from 'node:stream';
import { createProxyServer, type ProxyServer, type ProxyTarget } from 'http-proxy-3';
import { EdgeError, PayloadTooLargeError, UpstreamError, UpstreamTimeoutError, createLogger, shortHash } from '../common/index.js';
import type { Endpoint } from '../drivers/index.js';
import type { Lease } from '../orchestrator/index.js';
import { downstreamResponseRawHeaders, upstreamRequestRawHeaders, upstreamRequestHeaders, type ForwardInfo } from './headers.js';

const log = createLogger('proxy');

export interface ForwarderOptions {
  /** Idle keep-alive sockets to programs are closed after this; below common server keep-alive (5 s). */
  freeSocketTimeoutMs?: number;
  maxFreeSockets?: number;
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
  settledOutcome: boolean;
  settle(outcome: ForwardOutcome | EdgeError): void;
  timer: NodeJS.Timeout | undefined;
  timedOut: boolean;
  upgraded: boolean;
  upstream: http.ClientRequest | undefined;
}

function target(endpoint: Endpoint): ProxyTarget {
  return endpoint.kind === 'tcp'
    ? { protocol: 'http:', host: endpoint.host, port: endpoint.port }
    : { protocol: 'http:', host: 'localhost', port: 0, socketPath: endpoint.path };
}

/** Maps a transport error talking to the program to the client-facing error. */
function classify(error: NodeJS.ErrnoException, exchange: Exchange): { error: EdgeError; fatal: boolean } {
  if (exchange.timedOut || error instanceof UpstreamTimeoutError) {
    return { error: new UpstreamTimeoutError(`program did not answer within ${exchange.lease.requestTimeoutMs} ms`), fatal: false };
  }
  if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT') {
    return { error: new UpstreamError('program refused the connection'), fatal: true };
  }
  return { error: new UpstreamError('program closed the connection'), fatal: false };
}

/**
 * HTTP and WebSocket forwarding to an execution's endpoint through http-proxy-3.
 * Bodies stream in both directions; nothing is buffered whole.
 */
export class Forwarder {
  private readonly agent: http.Agent;
  private readonly proxy: ProxyServer;
  private readonly exchanges = new WeakMap<IncomingMessage, Exchange>();

  constructor(options: ForwarderOptions = {}) {
    this.agent = new http.Agent({
      keepAlive: true,
      maxFreeSockets: options.maxFreeSockets ?? 256,
      timeout: options.freeSocketTimeoutMs ?? 4_000,
      scheduling: 'lifo',
    });
    // selfHandleResponse: we write status and headers ourselves (hop-by-hop
    // filtering, program header) instead of the library's header passes.
    this.proxy = createProxyServer({ agent: this.agent, selfHandleResponse: true, xfwd: false, ws: true });
    this.proxy.on('proxyReq', (upstream, req) => this.onUpstreamRequest(upstream, req));
    this.proxy.on('proxyReqWs', (upstream, req) => this.onUpstreamRequest(upstream, req));
    this.proxy.on('proxyRes', (upstreamRes, req, res) => this.onUpstreamResponse(upstreamRes, req, res));
    // Client went away while the request was being sent: not an error worth a log line.
    this.proxy.on('econnreset', () => {});
    this.proxy.on('error', (error) => log.debug('unrouted proxy error', { error: error.message }));
  }

  /**
   * Forwards one HTTP exchange. Resolves when it ends; rejects with an EdgeError
   * only when nothing has been sent to the client yet (edge/ writes the error).
   *
   * Plain http.request rather than http-proxy-3's web passes: measured on the bench
   * upstream, the library's per-request option merging, header copies and listener
   * set-up cost about a third of a worker's keep-alive throughput; WebSocket upgrades,
   * where it earns its keep, still go through it.
   */
  web(req: IncomingMessage, res: ServerResponse, lease: Lease, info: ForwardInfo, limits: { maxBodyBytes?: number } = {}): Promise<ForwardOutcome> {
    return new Promise((resolve, reject) => {
      const exchange = this.begin(req, lease, (outcome) => {
        if (outcome instanceof EdgeError) reject(outcome);
        else resolve(outcome);
      });
      const endpoint = lease.endpoint;
      const upstream = http.request({
        agent: this.agent,
        method: req.method,
        path: req.url,
        headers: upstreamRequestRawHeaders(req.rawHeaders, info) as unknown as http.OutgoingHttpHeaders,
        ...(endpoint.kind === 'tcp' ? { host: endpoint.host, port: endpoint.port } : { socketPath: endpoint.path }),
      });
      exchange.upstream = upstream;
      let tooLarge = false;
      res.once('close', () => {
        // The client left (or the response was cut): stop talking to the program.
        if (!res.writableFinished) upstream.destroy();
        exchange.settle({ status: res.statusCode, complete: res.writableFinished });
      });
      upstream.on('error', (error: NodeJS.ErrnoException) => {
        // We cut it ourselves (body too large), or the client left first (res 'close' settled).
        if (tooLarge || exchange.settledOutcome) return;
        const { error: edgeError, fatal } = classify(error, exchange);
        lease.reportFailure(edgeError.message, fatal);
        if (res.headersSent) {
          // Too late to change the status: cut the response so the client sees it incomplete.
          res.destroy();
          exchange.settle({ status: res.statusCode, complete: false });
        } else {
          exchange.settle(edgeError);
        }
      });
      upstream.on('response', (upstreamRes) => this.onUpstreamResponse(upstreamRes, req, res));
      req.on('error', () => upstream.destroy());
      if (exchange.timedOut) upstream.destroy(new UpstreamTimeoutError('request timeout'));
      // A declared Content-Length was checked by edge/; a chunked body is counted as it streams.
      const max = limits.maxBodyBytes ?? 0;
      if (max > 0 && req.headers['content-length'] === undefined && req.headers['transfer-encoding'] !== undefined) {
        const body = new BodyLimit(max, () => {
          if (tooLarge) return;
          tooLarge = true;
          req.unpipe(body);
          upstream.destroy();
          if (res.headersSent) {
            res.destroy();
            exchange.settle({ status: res.statusCode, complete: false });
          } else {
            exchange.settle(new PayloadTooLargeError(`request body larger than ${max} bytes`));
          }
        });
        req.pipe(body).pipe(upstream);
      } else {
        req.pipe(upstream);
      }
    });
  }

  /**
   * Forwards a WebSocket upgrade. Resolves when the tunnel closes; rejects with an
   * EdgeError when the program could not be reached before the upgrade completed.
   */
  ws(req: IncomingMessage, socket: Duplex, head: Buffer, lease: Lease, info: ForwardInfo): Promise<ForwardOutcome> {
    return new Promise((resolve, reject) => {
      const exchange = this.begin(req, lease, (outcome) => {
        if (outcome instanceof EdgeError) reject(outcome);
        else resolve(outcome);
      });
      socket.once('close', () => exchange.settle({ status: exchange.upgraded ? 101 : 0, complete: exchange.upgraded }));
      req.headers = upstreamRequestHeaders(req.headers, info, true);
      this.proxy.ws(req, socket, head, { target: target(lease.endpoint) }, (error) => {
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

  /** Closes idle upstream sockets (shutdown). */
  close(): void {
    this.agent.destroy();
  }

  private begin(req: IncomingMessage, lease: Lease, done: (outcome: ForwardOutcome | EdgeError) => void): Exchange {
    const exchange: Exchange = {
      lease,
      settledOutcome: false,
      timer: undefined,
      timedOut: false,
      upgraded: false,
      upstream: undefined,
      settle: (outcome) => {
        if (exchange.settledOutcome) return;
        exchange.settledOutcome = true;
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
        if (exchange.upstream) exchange.upstream.destroy(new UpstreamTimeoutError('request timeout'));
        else exchange.settle(new UpstreamTimeoutError(`program did not answer within ${lease.requestTimeoutMs} ms`));
      }, lease.requestTimeoutMs);
    }
    this.exchanges.set(req, exchange);
    return exchange;
  }

  private onUpstreamRequest(upstream: http.ClientRequest, req: IncomingMessage): void {
    const exchange = this.exchanges.get(req);
    if (!exchange) return;
    exchange.upstream = upstream;
    upstream.once('upgrade', () => {
      exchange.upgraded = true;
      clearTimeout(exchange.timer);
    });
    if (exchange.timedOut) upstream.destroy(new UpstreamTimeoutError('request timeout'));
  }

  private onUpstreamResponse(upstreamRes: IncomingMessage, req: IncomingMessage, res: ServerResponse): void {
    const exchange = this.exchanges.get(req);
    if (exchange) clearTimeout(exchange.timer);
    if (res.headersSent || res.destroyed || !exchange || exchange.timedOut) {
      upstreamRes.resume();
      return;
    }
    res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, downstreamResponseRawHeaders(upstreamRes.rawHeaders, exchange.lease.hash, exchange.lease.codeRef) as unknown as http.OutgoingHttpHeaders);
    // A program that dies mid-response: cut the client's response too, so it is
    // not mistaken for a complete one.
    upstreamRes.once('close', () => {
      if (!upstreamRes.complete) res.destroy();
    });
    upstreamRes.pipe(res);
  }
}
