import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { ALEPH_VM_VERSION, type HttpProtocol, type ListenAddress, type ServerSettings } from '../config/index.js';
import { canonicalHost, createLogger, hostPort } from '../common/index.js';
import type { MetricsRegistry } from '../metrics/index.js';
import type { ExecutionGateway } from '../orchestrator/index.js';
import { NodePages, type NodeState } from '../nodeapi/index.js';
import { ControlListener, type ControlGateway } from '../control/index.js';
import type { Forwarder } from '../proxy/index.js';
import { TLS_PROFILE, type CertificateResolver } from '../tls/index.js';
import { H2Front } from './h2.js';
import { PipeliningCap } from './h1-pipelining.js';
import { HandshakeGuard } from './handshake-guard.js';
import { createHttpHandler } from './http-listener.js';
import { Pipeline, type RouteTable } from './pipeline.js';
import { inheritedSockets, type InheritedSocket } from './systemd.js';

const log = createLogger('edge');

export interface EdgeDeps {
  server: ServerSettings;
  certs: CertificateResolver;
  gateway: ExecutionGateway;
  /** What node pages read (in a worker: the primary's state over IPC). */
  nodeState: NodeState;
  /** /control/* (in a worker: the primary's control service over IPC); absent = 501. */
  control?: ControlGateway;
  routes: RouteTable;
  forwarder: Forwarder;
  metrics: MetricsRegistry;
  version: string;
  /** The aleph-vm release whose API the node answers (`node.aleph_vm_version`); default ALEPH_VM_VERSION. */
  alephVmVersion?: string;
  /** Sockets from systemd; default: read from the environment. */
  inherited?: InheritedSocket[];
  /** TLS session ticket keys (48 bytes) shared by every worker, so resumption works across them. */
  ticketKeys?: Buffer;
  /**
   * Workers: bind each listener with SO_REUSEPORT, so the kernel spreads connections
   * evenly over the workers' own sockets (a shared socket lets whichever worker wakes
   * first take them). Falls back to the shared socket where it is not supported.
   */
  reusePort?: boolean;
}

type Kind = 'https' | 'http';

/**
 * One listening socket as bound: the real port (tests bind port 0), and the fd when
 * systemd passed it. Data for whoever reads it; a display string is made at the end
 * (status output, logs).
 */
export interface ListenerInfo {
  /** 'https' serves TLS (HTTP/1.1 and h2); 'http' redirects and answers ACME HTTP-01. */
  protocol: Kind;
  /** The bound IP address ('0.0.0.0', '::', '127.0.0.1'); absent for an inherited socket that is not TCP. */
  address?: string;
  port?: number;
  /** The descriptor systemd passed (socket activation). */
  fd?: number;
}

interface Listener {
  kind: Kind;
  server: http.Server | https.Server;
  fd: number | undefined;
}

/** The node's listeners (:443 and :80, or inherited fds) and their request pipeline. */
export class Edge {
  readonly pipeline: Pipeline;
  private readonly listeners: Listener[] = [];
  private readonly tunnels = new Set<Duplex>();
  private closing: Promise<void> | undefined;
  private readonly handshakeFailures;
  private readonly handshakes: HandshakeGuard;
  private readonly h2: H2Front | undefined;
  private ticketKeys: Buffer | undefined;
  private defaultCertTimer: NodeJS.Timeout | undefined;
  /** The domain's certificate is the listeners' default context (clients without SNI get it). */
  private defaultCertInstalled = false;
  private defaultCertRefresh: Promise<void> | undefined;

  constructor(private readonly deps: EdgeDeps) {
    this.pipeline = new Pipeline({
      routes: deps.routes,
      gateway: deps.gateway,
      forwarder: deps.forwarder,
      metrics: deps.metrics,
      pages: new NodePages(deps.nodeState, deps.version, deps.alephVmVersion ?? ALEPH_VM_VERSION),
      control: deps.control ? new ControlListener(deps.control) : undefined,
      domain: deps.server.domain,
      maxBodyBytes: deps.server.limits.maxBodyBytes,
      sendTimeoutMs: deps.server.limits.sendTimeoutMs,
      hsts: deps.server.hsts,
    });
    const limits = deps.server.limits;
    this.ticketKeys = deps.ticketKeys;
    this.handshakes = new HandshakeGuard({ timeoutMs: limits.handshakeTimeoutMs, perAddress: limits.maxHandshakesPerAddress, total: limits.maxHandshakes }, deps.metrics);
    if (deps.server.protocols.includes('h2')) {
      this.h2 = new H2Front(limits, {
        request: (req, res) => void this.pipeline.handle(req, res, 'https'),
        connect: (req, res, stream) => void this.pipeline.connectH2(req, res, stream),
      }, deps.metrics);
    }
    this.handshakeFailures = deps.metrics.counter('aleph_edge_tls_handshake_failures_total', 'TLS handshakes that failed, by reason');
  }

  /** Swaps the routing table (reload); requests in flight keep the one they started with. */
  setRoutes(routes: RouteTable): void {
    this.pipeline.routes = routes;
  }

  async start(): Promise<void> {
    const inherited = this.deps.inherited ?? inheritedSockets();
    try {
      if (inherited.length > 0) {
        for (const socket of inherited) {
          if (socket.name !== 'https' && socket.name !== 'http') {
            throw new Error(`inherited socket fd ${socket.fd} is named "${socket.name}"; name it "https" or "http" (FileDescriptorName=)`);
          }
          await this.listen(socket.name, { fd: socket.fd });
        }
      } else {
        for (const address of this.deps.server.httpsListen) await this.listen('https', address);
        for (const address of this.deps.server.httpListen) await this.listen('http', address);
      }
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /**
   * Clients without SNI (monitoring by IP, some scanners) get the node domain's
   * certificate: it becomes the listeners' default context, refreshed periodically
   * so that renewals reach it. It is looked up on demand, not at start-up (where it
   * would order or mint a certificate nobody asked for yet): when a handshake for the
   * domain succeeds, or when a client without SNI fails for want of it.
   */
  private wantDefaultCertificate(): void {
    if (this.defaultCertInstalled || this.defaultCertRefresh || this.listeners.length === 0) return;
    this.defaultCertRefresh = this.refreshDefaultCertificate().finally(() => (this.defaultCertRefresh = undefined));
  }

  private async refreshDefaultCertificate(): Promise<void> {
    const { certs, server: settings } = this.deps;
    if (!certs.certificate || !settings.domain) return;
    let pair;
    try {
      pair = await certs.certificate(settings.domain);
    } catch (error) {
      log.debug('no default certificate yet', { error: (error as Error).message });
    }
    if (this.listeners.length === 0) return; // closed meanwhile
    if (pair) {
      this.defaultCertInstalled = true;
      for (const { kind, server } of this.listeners) {
        if (kind !== 'https') continue;
        const tlsServer = server as https.Server;
        tlsServer.setSecureContext({ cert: pair.certPem, key: pair.keyPem, ...TLS_PROFILE });
        if (this.ticketKeys) tlsServer.setTicketKeys(this.ticketKeys);
      }
    }
    if (!this.defaultCertInstalled) return; // asked again by the next handshake that needs it
    clearTimeout(this.defaultCertTimer);
    this.defaultCertTimer = setTimeout(() => void this.refreshDefaultCertificate(), 10 * 60_000);
    this.defaultCertTimer.unref();
  }

  /** Rotates the session ticket keys of every HTTPS listener. */
  setTicketKeys(keys: Buffer): void {
    this.ticketKeys = keys;
    for (const { kind, server } of this.listeners) if (kind === 'https') (server as https.Server).setTicketKeys(keys);
  }

  /** The listening sockets, with the addresses and ports actually bound. */
  describe(): ListenerInfo[] {
    return this.listeners.map(infoOf);
  }

  /** Bound port of the first listener of a kind (tests bind port 0). */
  port(kind: Kind): number | undefined {
    return this.describe().find((l) => l.protocol === kind)?.port;
  }

  /** Stops accepting connections; idle keep-alive connections are closed, active ones finish. */
  stopAccepting(): void {
    for (const { server } of this.listeners) {
      server.close();
      server.closeIdleConnections();
    }
    this.h2?.stopAccepting();
    // Nothing was asked on them yet: a drain has nothing to wait for.
    this.handshakes.closeAll();
  }

  /** Waits for in-flight requests up to the deadline, then cuts whatever is left. */
  async finish(deadline: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.pipeline.idle(),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(0, deadline - Date.now())); }),
    ]);
    clearTimeout(timer);
    await this.close();
    // Exchanges cut by the close write their access-log line and metrics on their
    // 'close' events, after the sockets are gone; a worker exits right after this.
    let settle: NodeJS.Timeout | undefined;
    await Promise.race([this.pipeline.idle(), new Promise<void>((resolve) => { settle = setTimeout(resolve, 1_000); })]);
    clearTimeout(settle);
  }

  /**
   * Closes every listener and connection now. Once: a second caller (a drain cut
   * short by a second signal) shares the first close, since a server's close
   * callback registered after its 'close' event would never run.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.defaultCertTimer);
      for (const tunnel of this.tunnels) tunnel.destroy();
      this.handshakes.closeAll();
      this.h2?.closeAll();
      await Promise.all(this.listeners.map(({ server }) => new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })));
      this.listeners.length = 0;
    })();
    return this.closing;
  }

  private async listen(kind: Kind, target: ListenAddress | { fd: number }): Promise<void> {
    // For messages before the socket is bound; once bound, the listener's info says it.
    const label = 'fd' in target ? `fd:${target.fd}` : hostPort(target.host, target.port);
    const server = kind === 'https' ? this.createHttpsServer() : this.createHttpServer();
    this.applyLimits(server);
    const bind = (reusePort: boolean) => new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const ready = () => {
        server.off('error', reject);
        resolve();
      };
      if ('fd' in target) server.listen({ fd: target.fd }, ready);
      else server.listen({ host: target.host, port: target.port, ipv6Only: target.host.includes(':'), ...(reusePort ? { reusePort: true } : {}) }, ready);
    });
    // Port 0 would give each worker a port of its own: those share the primary's socket.
    const reusePort = this.deps.reusePort === true && !('fd' in target) && target.port !== 0;
    await bind(reusePort).catch((error: NodeJS.ErrnoException) => {
      if (!reusePort || error.code === 'EADDRINUSE' || error.code === 'EACCES') throw error;
      log.info('SO_REUSEPORT not available, sharing the listening socket', { listener: label, error: error.code ?? error.message });
      return bind(false);
    }).catch((error: NodeJS.ErrnoException) => {
      throw listenError(kind, label, error);
    });
    const listener: Listener = { kind, server, fd: 'fd' in target ? target.fd : undefined };
    server.on('error', (error) => log.error('listener error', { ...infoOf(listener), error: error.message }));
    this.listeners.push(listener);
    log.info('listening', { ...infoOf(listener) });
  }

  private createHttpsServer(): https.Server {
    const certs = this.deps.certs;
    // SNICallback runs with the socket as `this`: the edge and its domain are captured here.
    const edge = this;
    const domain = this.deps.server.domain.toLowerCase();
    const isDomain = (servername: string) => canonicalHost(servername) === domain;
    const server = https.createServer({
      // Node calls SNICallback with the TLSSocket as `this`; it serves the TLS-ALPN-01
      // validation certificate to sockets that negotiated 'acme-tls/1' (see alpnSelect).
      SNICallback: function (this: TLSSocket, servername, callback) {
        sniSeen.add(this);
        const validation = acmeValidation.has(this) && certs.alpnChallenge !== undefined;
        const lookup = validation ? certs.alpnChallenge!(servername) : certs.secureContext(servername);
        lookup.then(
          (context) => {
            if (!context) return callback(new Error(`no certificate for ${servername}`));
            if (!validation && !edge.defaultCertInstalled && isDomain(servername)) edge.wantDefaultCertificate();
            callback(null, context);
          },
          (error: Error) => callback(error),
        );
      },
      ...TLS_PROFILE,
      ALPNCallback: alpnSelector(this.deps.server.protocols, certs.alpnChallenge !== undefined),
      handshakeTimeout: this.deps.server.limits.handshakeTimeoutMs,
      maxHeaderSize: this.deps.server.limits.maxHeaderBytes,
      connectionsCheckingInterval: checkingInterval(this.deps.server.limits),
    });
    this.routeByAlpn(server);
    this.handshakes.attach(server);
    if (this.deps.ticketKeys) server.setTicketKeys(this.deps.ticketKeys);
    if (certs.ocspResponse) {
      // Staple when the resolver has a cached OCSP response; otherwise the handshake goes on without one.
      server.on('OCSPRequest', (certificate: Buffer, issuer: Buffer | null, callback: (err: Error | null, response?: Buffer) => void) => {
        certs.ocspResponse!(certificate, issuer).then((response) => callback(null, response), () => callback(null));
      });
    }
    const pipelining = new PipeliningCap(this.deps.server.limits.h1MaxPipelinedRequests);
    server.on('request', (req, res) => pipelining.admit(req, res, () => void this.pipeline.handle(req, res, 'https')));
    server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
      this.tunnels.add(socket);
      socket.once('close', () => this.tunnels.delete(socket));
      void this.pipeline.upgrade(req, socket, head);
    });
    server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: TLSSocket) => {
      this.handshakeFailures.inc({ reason: error.code ?? 'error' });
      if (!sniSeen.has(socket)) this.wantDefaultCertificate(); // no SNI: perhaps no default certificate yet
      socket.destroy();
      log.debug('tls handshake failed', { sni: (socket as TLSSocket & { servername?: string }).servername || undefined, error: error.message });
    });
    return server;
  }

  /**
   * https.Server serves HTTP/1.1 on every secure connection; a connection that
   * negotiated 'h2' goes to the HTTP/2 front instead, and with h1 turned off a
   * client that negotiated nothing is closed.
   */
  private routeByAlpn(server: https.Server): void {
    const h1 = server.listeners('secureConnection') as Array<(socket: TLSSocket) => void>;
    server.removeAllListeners('secureConnection');
    const h1Enabled = this.deps.server.protocols.includes('h1');
    server.on('secureConnection', (socket: TLSSocket) => {
      if (socket.alpnProtocol === 'h2' && this.h2) this.h2.accept(socket);
      // acme-tls/1 validations end after the handshake; the HTTP/1.1 side closes them.
      else if (h1Enabled || socket.alpnProtocol === 'acme-tls/1') for (const listener of h1) listener.call(server, socket);
      else socket.destroy();
    });
  }

  private createHttpServer(): http.Server {
    const handler = createHttpHandler(this.deps.certs, () => this.port('https'), this.pipeline.identityHeaders);
    const server = http.createServer({ maxHeaderSize: this.deps.server.limits.maxHeaderBytes, connectionsCheckingInterval: checkingInterval(this.deps.server.limits) });
    server.on('request', (req, res) => void handler(req, res));
    server.on('upgrade', (_req, socket: Duplex) => socket.destroy());
    return server;
  }

  private applyLimits(server: http.Server | https.Server): void {
    const limits = this.deps.server.limits;
    server.headersTimeout = limits.headersTimeoutMs;
    server.requestTimeout = limits.requestTimeoutMs;
    server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections;
    server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
      // Malformed HTTP from the client: answer 4xx without involving the pipeline.
      if (!socket.writable) return socket.destroy();
      const status = error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large'
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    });
  }
}

// TLS-ALPN-01 (RFC 8737). With TLS 1.3 OpenSSL selects ALPN before the certificate
// callback, so a client offering 'acme-tls/1' is marked here and SNICallback serves
// it the validation certificate. When SNI came first (TLS 1.2) the certificate is
// already chosen: 'acme-tls/1' is not selected and that validation fails cleanly.
const sniSeen = new WeakSet<TLSSocket>();
const acmeValidation = new WeakSet<TLSSocket>();

function alpnSelector(enabled: HttpProtocol[], acme: boolean) {
  const h2 = enabled.includes('h2');
  const h1 = enabled.includes('h1');
  return function (this: TLSSocket, { protocols }: { servername: string; protocols: string[] }): string | undefined {
    if (acme && protocols.includes('acme-tls/1') && !sniSeen.has(this)) {
      acmeValidation.add(this);
      return 'acme-tls/1';
    }
    if (h2 && protocols.includes('h2')) return 'h2';
    // A client offering none of ours is refused.
    return h1 && protocols.includes('http/1.1') ? 'http/1.1' : undefined;
  };
}

/**
 * How often Node enforces headers_timeout / request_timeout. Its default (30 s) let a
 * slow-header client keep its connection up to 30 s past headers_timeout.
 */
function checkingInterval(limits: ServerSettings['limits']): number {
  const timeouts = [limits.headersTimeoutMs, limits.requestTimeoutMs].filter((t) => t > 0);
  return Math.max(250, Math.min(1000, ...timeouts.map((t) => t / 4)));
}

/** A bind that failed, in words an operator can act on (`where`: `host:port` or `fd:N`). */
export function listenError(kind: string, where: string, error: NodeJS.ErrnoException): Error {
  const hint = error.code === 'EACCES' ? ' (ports below 1024 need root, CAP_NET_BIND_SERVICE or systemd socket activation)'
    : error.code === 'EADDRINUSE' ? ' (another process is listening there)' : '';
  return new Error(`cannot listen on ${kind} ${where}: ${error.code ?? error.message}${hint}`);
}

function infoOf(listener: Listener): ListenerInfo {
  const bound = listener.server.address() as AddressInfo | string | null;
  const info: ListenerInfo = { protocol: listener.kind };
  if (bound && typeof bound === 'object') {
    info.address = bound.address;
    info.port = bound.port;
  }
  if (listener.fd !== undefined) info.fd = listener.fd;
  return info;
}
