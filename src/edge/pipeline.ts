import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { BadRequestError, PayloadTooLargeError, createLogger, logEnabled, shortHash } from '../common/index.js';
import type { MetricsRegistry } from '../metrics/index.js';
import type { ExecutionGateway, Lease } from '../orchestrator/index.js';
import type { ForwardInfo, ForwardLimits, Forwarder } from '../proxy/index.js';
import { mountPrefix, type Route, type RouteRequest } from '../routing/index.js';
import { replyFor, writeHttpError, writeSocketError, type ErrorReply } from './errors.js';
import { NodePages } from '../nodeapi/index.js';
import type { ControlListener } from '../control/index.js';
import { NodeDomainHeaders } from './node-domain.js';

/** What the pipeline needs of routing; swapped whole on reload. */
export interface RouteTable {
  route(request: RouteRequest): Promise<Route>;
  /** The route when known without waiting; undefined when only `route` can tell. Throws what `route` rejects with. */
  routeNow(request: RouteRequest): Route | undefined;
}

/** One request as the pipeline tracks it until its response closes. */
interface RequestRecord {
  readonly started: number;
  readonly host: string;
  readonly target: string;
  readonly proto: ForwardInfo['proto'];
  /** The program, once routing named one. */
  hash: string | undefined;
}

export interface PipelineDeps {
  routes: RouteTable;
  gateway: ExecutionGateway;
  forwarder: Forwarder;
  metrics: MetricsRegistry;
  pages: NodePages;
  /** /control/* (scheduler and owner operations); without it the pages answer 501. */
  control?: ControlListener;
  /** server.domain: the host whose answers carry the node-domain headers. */
  domain: string;
  maxBodyBytes: number;
  /** server.limits.send_timeout: a response its client stops reading is cut after this. */
  sendTimeoutMs: number;
  /** Strict-Transport-Security for the node domain; '' for none. */
  hsts?: string;
}

const access = createLogger('access');

const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

function statusClass(status: number): string {
  return status === 0 ? 'none' : `${Math.floor(status / 100)}xx`;
}

function clientIp(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** listener -> routing -> orchestrator.acquire -> proxy -> lease.release, for each request. */
export class Pipeline {
  routes: RouteTable;
  private readonly requests;
  private readonly duration;
  private readonly errors;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  private readonly nodeDomain: NodeDomainHeaders;
  private readonly limits: ForwardLimits;

  constructor(private readonly deps: PipelineDeps) {
    this.routes = deps.routes;
    this.limits = { maxBodyBytes: deps.maxBodyBytes, sendTimeoutMs: deps.sendTimeoutMs };
    this.nodeDomain = new NodeDomainHeaders(deps.domain, deps.hsts ?? '');
    this.requests = deps.metrics.counter('aleph_edge_requests_total', 'Requests answered, by status class');
    this.duration = deps.metrics.histogram('aleph_edge_request_duration_seconds', 'Request duration, by status class', DURATION_BUCKETS);
    this.errors = deps.metrics.counter('aleph_edge_errors_total', 'Error replies, by kind');
    deps.metrics.gauge('aleph_edge_requests_in_flight', 'Requests being served').collect(() => [[{}, this.inFlight]]);
  }

  /** `Server` and `X-Aleph-Edge-Version` of the node's own answers. */
  get identityHeaders(): Readonly<Record<string, string>> {
    return this.deps.pages.identityHeaders;
  }

  /** Requests (and WebSocket tunnels) currently open. */
  get active(): number {
    return this.inFlight;
  }

  /** Resolves when no request is in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * One HTTP request. A warm program on a route known without waiting (every rule but
   * a TXT lookup), the common case, is served with no promise and no await; the rest
   * (node pages, TXT routes, programs to boot) go through `serveWaiting`.
   */
  handle(req: IncomingMessage, res: ServerResponse, proto: ForwardInfo['proto']): void {
    const request: RequestRecord = {
      started: performance.now(),
      // HTTP/2 names the authority in a pseudo-header (a Host header, if sent, must agree: RFC 9113 8.3.1).
      host: req.headers.host ?? (req.headers[':authority'] as string | undefined) ?? '',
      target: req.url ?? '',
      hash: undefined,
      proto,
    };
    this.begin();
    res.once('close', () => this.finish(req, res, request));
    this.nodeDomain.apply(request.host, res);
    let route: Route | undefined;
    try {
      this.checkBodySize(req);
      route = this.routes.routeNow({ host: request.host, path: request.target });
    } catch (error) {
      this.refuse(res, error, undefined);
      return;
    }
    if (route?.kind === 'program') {
      request.hash = route.hash;
      const lease = this.deps.gateway.leaseIfReady(route.hash);
      if (lease) {
        this.forward(req, res, request, route, lease);
        return;
      }
    }
    void this.serveWaiting(req, res, request, route);
  }

  /** The rest of `handle`: a TXT route to look up, a node page, or a program to wait for. */
  private async serveWaiting(req: IncomingMessage, res: ServerResponse, request: RequestRecord, known: Route | undefined): Promise<void> {
    let lease: Lease | undefined;
    try {
      const route = known ?? await this.routes.route({ host: request.host, path: request.target });
      if (route.kind === 'node') {
        if (route.page === 'control' && this.deps.control) {
          for (const [name, value] of Object.entries(this.deps.pages.identityHeaders)) res.setHeader(name, value);
          await this.deps.control.serve(req, res, route.path);
        } else {
          await this.deps.pages.handle(req, res, route.path);
        }
        return;
      }
      request.hash = route.hash;
      // A route handle() knew already found no warm lease there; a TXT route may.
      if (!known) lease = this.deps.gateway.leaseIfReady(route.hash);
      if (!lease) {
        // Wait for the program, giving up if the client leaves.
        const gone = leaveSignal(res);
        try {
          lease = await this.deps.gateway.acquire(route.hash, gone.signal);
        } finally {
          gone.dispose();
        }
      }
      if (res.destroyed) return; // the client left while the program booted
      const taken = lease;
      lease = undefined; // forward releases it
      this.forward(req, res, request, route, taken);
    } catch (error) {
      this.refuse(res, error, request.hash);
    } finally {
      lease?.release();
    }
  }

  /** Proxies to the program; the lease is released when the exchange ends. */
  private forward(req: IncomingMessage, res: ServerResponse, request: RequestRecord, route: Route & { kind: 'program' }, lease: Lease): void {
    const info: ForwardInfo = { path: route.path, clientIp: clientIp(req), proto: request.proto, host: request.host, prefix: mountPrefix(route) };
    this.deps.forwarder.relay(req, res, lease, info, this.limits, (outcome) => {
      lease.release();
      if (outcome instanceof Error) this.refuse(res, outcome, route.hash);
    });
  }

  /** An error reply, unless the client is gone. Errors are the node's own answers, whatever the route. */
  private refuse(res: ServerResponse, error: unknown, hash: string | undefined): void {
    if (res.destroyed) return;
    if (!res.headersSent) for (const [name, value] of Object.entries(this.deps.pages.identityHeaders)) res.setHeader(name, value);
    this.fail(res, replyFor(error), hash);
  }

  /** Metrics and the access line, once the response is closed. */
  private finish(req: IncomingMessage, res: ServerResponse, request: RequestRecord): void {
    this.end();
    const seconds = (performance.now() - request.started) / 1000;
    const status = res.headersSent ? res.statusCode : 0;
    this.requests.inc({ class: statusClass(status) });
    this.duration.observe(seconds, { class: statusClass(status) });
    // Below the log level (warn, error) the line goes nowhere: not built for every request.
    if (logEnabled('info')) {
      access.info(`${req.method} ${request.host}${redactTarget(request.target)}`, {
        hash: request.hash ? shortHash(request.hash) : undefined, status, ms: Math.round(seconds * 1000), cut: res.writableFinished ? undefined : true,
      });
    }
  }

  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const host = req.headers.host ?? '';
    const target = req.url ?? '';
    let hash: string | undefined;
    let lease: Lease | undefined;
    this.begin();
    try {
      if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || req.method !== 'GET') {
        throw new BadRequestError('unsupported upgrade');
      }
      if (hostHeaders(req.rawHeaders) > 1) throw new BadRequestError('more than one Host header');
      const route = await this.routes.route({ host, path: target });
      if (route.kind === 'node' && route.page === 'control' && this.deps.control) {
        access.info(`WS ${host}${target}`, { status: 101 });
        this.deps.control.upgrade(req, socket, head, route.path);
        return;
      }
      if (route.kind === 'node') throw new BadRequestError('unsupported upgrade');
      hash = route.hash;
      const abort = new AbortController();
      socket.once('close', () => abort.abort());
      lease = await this.deps.gateway.acquire(route.hash, abort.signal);
      if (socket.destroyed) return;
      const outcome = await this.deps.forwarder.ws(req, socket, head, lease, { path: route.path, clientIp: clientIp(req), proto: 'https', host, prefix: mountPrefix(route) });
      access.info(`WS ${host}${target}`, { hash: shortHash(hash), status: outcome.status });
    } catch (error) {
      if (socket.destroyed) return;
      const reply = replyFor(error);
      this.errors.inc({ kind: reply.kind });
      access.info(`WS ${host}${target}`, { hash: hash ? shortHash(hash) : undefined, status: reply.status });
      writeSocketError(socket, reply);
    } finally {
      lease?.release();
      this.end();
    }
  }

  /** A WebSocket over HTTP/2 (extended CONNECT with :protocol = websocket). */
  async connectH2(req: IncomingMessage, res: ServerResponse, stream: ServerHttp2Stream): Promise<void> {
    const host = (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? '';
    const target = req.url ?? '';
    let hash: string | undefined;
    let lease: Lease | undefined;
    this.begin();
    try {
      if (req.headers[':protocol'] !== 'websocket') throw new BadRequestError('unsupported CONNECT');
      const route = await this.routes.route({ host, path: target });
      if (route.kind === 'node') throw new BadRequestError('unsupported upgrade');
      hash = route.hash;
      const gone = leaveSignal(res);
      try {
        lease = await this.deps.gateway.acquire(route.hash, gone.signal);
      } finally {
        gone.dispose();
      }
      if (stream.destroyed) return;
      const outcome = await this.deps.forwarder.wsOverH2(req, stream, lease, { path: route.path, clientIp: clientIp(req), proto: 'https', host, prefix: mountPrefix(route) });
      access.info(`WS ${host}${target}`, { hash: shortHash(hash), status: outcome.status, h2: true });
    } catch (error) {
      if (stream.destroyed) return;
      const reply = replyFor(error);
      access.info(`WS ${host}${target}`, { hash: hash ? shortHash(hash) : undefined, status: reply.status, h2: true });
      this.fail(res, reply, hash);
    } finally {
      lease?.release();
      this.end();
    }
  }

  private fail(res: ServerResponse, reply: ErrorReply, hash: string | undefined): void {
    this.errors.inc({ kind: reply.kind });
    if (reply.status >= 500 && reply.kind !== 'internal') {
      createLogger('edge').warn(reply.message, { hash: hash ? shortHash(hash) : undefined, status: reply.status });
    }
    writeHttpError(res, reply);
  }

  private checkBodySize(req: IncomingMessage): void {
    // Node keeps the first of several Host headers; RFC 9112 says such a request is invalid.
    if (hostHeaders(req.rawHeaders) > 1) throw new BadRequestError('more than one Host header');
    const max = this.deps.maxBodyBytes;
    if (max > 0 && Number(req.headers['content-length'] ?? 0) > max) {
      throw new PayloadTooLargeError(`request body larger than ${max} bytes`);
    }
  }

  private begin(): void {
    this.inFlight++;
  }

  private end(): void {
    this.inFlight--;
    if (this.inFlight === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}

function hostHeaders(raw: string[]): number {
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') count++;
  return count;
}

// Only while waiting for a lease: an abort costs a DOMException with a stack, so a
// normally completed response must never trigger one.
function leaveSignal(res: ServerResponse): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onClose = () => controller.abort();
  res.once('close', onClose);
  return { signal: controller.signal, dispose: () => res.off('close', onClose) };
}

/** The login URL carries the node's secret: it never reaches the access log. */
function redactTarget(target: string): string {
  return target.includes('token=') ? target.replace(/([?&]token=)[^&]*/g, '$1[redacted]') : target;
}
