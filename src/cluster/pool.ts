import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../common/index.js';
import type { Settings } from '../config/index.js';
import type { InheritedSocket, ListenerInfo } from '../edge/index.js';
import type { FamilySnapshot, SnapshotPart } from '../metrics/index.js';
import type { ExecutionGateway, Lease } from '../orchestrator/index.js';
import { NODE_STATE_METHODS, type NodeState } from '../nodeapi/index.js';
import type { ControlGateway, ControlRequest } from '../control/index.js';
import { toWire } from './errors.js';
import { claimAddresses, type AddressClaims } from './port-probe.js';
import type { PrimaryMessage, WireLease, WirePem, WorkerMessage } from './protocol.js';

const log = createLogger('cluster');

/** What the primary serves to its workers. */
export interface PoolServices {
  gateway: ExecutionGateway;
  /** What node pages read; workers ask for it over IPC. */
  node: NodeState;
  /** /control/*; workers forward it over IPC. */
  control?: ControlGateway;
  certificate(servername: string): Promise<{ certPem: string; keyPem: string } | undefined>;
  httpChallenge(token: string): Promise<string | undefined>;
  /** TLS-ALPN-01 validation certificate while a challenge is pending (acme mode). */
  alpnChallengeCertificate?(servername: string): { certPem: string; keyPem: string } | undefined;
  /** Cached OCSP staple for a certificate (acme mode). */
  ocspResponse?(certificate: Buffer, issuer: Buffer | null): Promise<Buffer | undefined>;
}

export interface PoolOptions {
  settings: Settings;
  version: string;
  workers: number;
  inherited: InheritedSocket[];
  services: PoolServices;
  /** Session ticket keys are replaced this often (resumption across workers keeps working). */
  ticketRotationMs?: number;
}

interface WorkerState {
  worker: Worker;
  index: number;
  listeners: ListenerInfo[];
  leases: Map<number, Lease>;
  acquiring: Map<number, AbortController>;
  metricsWaiters: Map<number, (families: FamilySnapshot[]) => void>;
  drained: boolean;
}

const RESTART_DELAY_MS = 1_000;

/**
 * The primary's side of a multi-core node: forks workers that own the listeners,
 * TLS and proxying, and answers their calls for executions and certificates.
 */
export class WorkerPool {
  private readonly states = new Map<number, WorkerState>();
  private settings: Settings;
  private ticketKeys = randomBytes(48);
  private ticketTimer: NodeJS.Timeout | undefined;
  private claims: AddressClaims[] = [];
  private draining = false;
  private nextLeaseId = 1;
  private nextMetricsId = 1;
  restarts = 0;

  constructor(private readonly options: PoolOptions) {
    this.settings = options.settings;
    // Workers share one lease per program among their requests; a retired
    // execution must stop receiving new ones at once.
    options.services.gateway.onRetire?.((hash) => this.broadcast({ type: 'retired', hash }));
  }

  async start(): Promise<void> {
    // Workers accept themselves (their own SO_REUSEPORT sockets, or the shared
    // ones): no hop through the primary per connection.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    if (this.options.inherited.length === 0) {
      this.claims.push(await claimAddresses('https', this.settings.server.httpsListen));
      try {
        this.claims.push(await claimAddresses('http', this.settings.server.httpListen));
      } catch (error) {
        await this.releaseClaims();
        throw error;
      }
    }
    cluster.setupPrimary({ exec: fileURLToPath(new URL('../cli.js', import.meta.url)), args: ['worker'], silent: false });
    try {
      await Promise.all(Array.from({ length: this.options.workers }, (_, index) => this.fork(index)));
    } catch (error) {
      await this.releaseClaims();
      throw error;
    }
    this.ticketTimer = setInterval(() => this.rotateTicketKeys(), this.options.ticketRotationMs ?? 12 * 3600_000);
    this.ticketTimer.unref();
  }

  describe(): ListenerInfo[] {
    const first = [...this.states.values()].find((s) => s.listeners.length > 0);
    return first ? first.listeners : [];
  }

  workers(): Array<{ index: number; pid: number | undefined; leases: number }> {
    return [...this.states.values()].map((s) => ({ index: s.index, pid: s.worker.process.pid, leases: s.leases.size }));
  }

  update(settings: Settings): void {
    this.settings = settings;
    this.broadcast({ type: 'settings', settings });
  }

  /** Workers stop accepting, finish their requests until the deadline, and exit. */
  async drain(deadline: number): Promise<void> {
    this.draining = true;
    clearInterval(this.ticketTimer);
    const exits = [...this.states.values()].map((s) => new Promise<void>((resolve) => {
      if (s.worker.isDead()) return resolve();
      s.worker.once('exit', () => resolve());
    }));
    this.broadcast({ type: 'drain', deadline });
    const hardStop = setTimeout(() => {
      for (const s of this.states.values()) if (!s.worker.isDead()) s.worker.kill('SIGKILL');
    }, Math.max(0, deadline - Date.now()) + 2_000);
    await Promise.all(exits);
    clearTimeout(hardStop);
    await this.releaseClaims();
  }

  private async releaseClaims(): Promise<void> {
    const claims = this.claims;
    this.claims = [];
    await Promise.all(claims.map((c) => c.close()));
  }

  /** Metrics of every worker, each to be labelled worker="<index>". */
  async metrics(): Promise<SnapshotPart[]> {
    return Promise.all([...this.states.values()].map(async (s) => ({
      labels: { worker: String(s.index) }, families: await this.workerMetrics(s),
    })));
  }

  private workerMetrics(state: WorkerState): Promise<FamilySnapshot[]> {
    if (state.worker.isDead()) return Promise.resolve([]);
    const id = this.nextMetricsId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => { state.metricsWaiters.delete(id); resolve([]); }, 2_000);
      state.metricsWaiters.set(id, (families) => { clearTimeout(timer); resolve(families); });
      this.send(state, { type: 'metrics', id });
    });
  }

  private fork(index: number): Promise<void> {
    // UV_TCP_SINGLE_ACCEPT: on a shared socket (the SO_REUSEPORT fallback) libuv
    // otherwise accepts every pending connection in one go, so the first worker to
    // wake takes a whole burst and the others idle.
    const worker = cluster.fork({ ALEPH_EDGE_WORKER: String(index), UV_TCP_SINGLE_ACCEPT: '1' });
    const state: WorkerState = {
      worker, index, listeners: [], leases: new Map(), acquiring: new Map(), metricsWaiters: new Map(), drained: false,
    };
    this.states.set(worker.id, state);
    // A send racing a worker's exit fails with EPIPE: the exit handler cleans up, nothing else to do.
    worker.on('error', (error: Error) => log.debug('worker channel error', { worker: index, error: error.message }));
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on('message', (message: WorkerMessage) => {
        if (message.type === 'hello') {
          this.send(state, {
            type: 'init', settings: this.settings, version: this.options.version,
            ticketKeys: this.ticketKeys.toString('base64'), inherited: this.options.inherited,
          });
          return;
        }
        if (message.type === 'ready') {
          state.listeners = message.listeners;
          if (!ready) {
            ready = true;
            log.info('worker ready', { worker: index, pid: worker.process.pid });
            resolve();
          }
          return;
        }
        this.onMessage(state, message);
      });
      worker.once('exit', (code, signal) => {
        this.onExit(state, code, signal);
        if (!ready) reject(new Error(`worker ${index} exited during start-up (${signal ?? `code ${code}`})`));
      });
    });
  }

  private onExit(state: WorkerState, code: number | null, signal: string | null): void {
    this.states.delete(state.worker.id);
    // Its requests are gone: give their leases back so idle timers run.
    for (const lease of state.leases.values()) lease.release();
    for (const controller of state.acquiring.values()) controller.abort();
    if (this.draining) return;
    this.restarts++;
    log.error('worker died, restarting it', { worker: state.index, code, signal });
    setTimeout(() => {
      if (!this.draining) this.fork(state.index).catch((error: Error) => log.error('worker restart failed', { error: error.message }));
    }, RESTART_DELAY_MS).unref();
  }

  private onMessage(state: WorkerState, message: WorkerMessage): void {
    switch (message.type) {
      case 'acquire': {
        const controller = new AbortController();
        state.acquiring.set(message.id, controller);
        this.options.services.gateway.acquire(message.hash, controller.signal).then((lease) => {
          state.acquiring.delete(message.id);
          if (controller.signal.aborted || state.worker.isDead()) return lease.release();
          const leaseId = this.nextLeaseId++;
          state.leases.set(leaseId, lease);
          const value: WireLease = {
            leaseId, hash: lease.hash, endpoint: lease.endpoint, requestTimeoutMs: lease.requestTimeoutMs, codeRef: lease.codeRef,
            lingerMs: lingerFor(this.settings.orchestrator.idleTimeoutMs),
          };
          this.send(state, { type: 'reply', id: message.id, ok: true, value });
        }, (error: unknown) => {
          state.acquiring.delete(message.id);
          if (!controller.signal.aborted) this.send(state, { type: 'reply', id: message.id, ok: false, error: toWire(error) });
        });
        break;
      }
      case 'cancel':
        state.acquiring.get(message.id)?.abort();
        break;
      case 'release':
        state.leases.get(message.leaseId)?.release(message.requests, message.idleMs);
        state.leases.delete(message.leaseId);
        break;
      case 'failure':
        state.leases.get(message.leaseId)?.reportFailure(message.reason, message.fatal);
        break;
      case 'linger':
        state.leases.get(message.leaseId)?.linger?.(message.lingering);
        break;
      case 'certificate':
        this.options.services.certificate(message.servername).then((pem) => {
          const value: WirePem | null = pem ? { cert: pem.certPem, key: pem.keyPem } : null;
          this.send(state, { type: 'reply', id: message.id, ok: true, value });
        }, (error: unknown) => this.send(state, { type: 'reply', id: message.id, ok: false, error: toWire(error) }));
        break;
      case 'challenge':
        this.options.services.httpChallenge(message.token).then(
          (value) => this.send(state, { type: 'reply', id: message.id, ok: true, value }),
          (error: unknown) => this.send(state, { type: 'reply', id: message.id, ok: false, error: toWire(error) }),
        );
        break;
      case 'alpn-certificate': {
        const pem = this.options.services.alpnChallengeCertificate?.(message.servername);
        const value: WirePem | null = pem ? { cert: pem.certPem, key: pem.keyPem } : null;
        this.send(state, { type: 'reply', id: message.id, ok: true, value });
        break;
      }
      case 'ocsp': {
        const ocsp = this.options.services.ocspResponse;
        const certificate = Buffer.from(message.certificate, 'base64');
        const issuer = message.issuer === null ? null : Buffer.from(message.issuer, 'base64');
        (ocsp ? ocsp(certificate, issuer) : Promise.resolve(undefined)).then(
          (response) => this.send(state, { type: 'reply', id: message.id, ok: true, value: response ? response.toString('base64') : null }),
          () => this.send(state, { type: 'reply', id: message.id, ok: true, value: null }),
        );
        break;
      }
      case 'node': {
        const node = this.options.services.node;
        const method = message.method;
        // Only the listed methods: the message comes from another process.
        const call = NODE_STATE_METHODS.includes(method)
          ? (method === 'verifyToken' ? node.verifyToken(String(message.arg ?? '')) : node[method]())
          : Promise.reject(new Error(`unknown node state method ${String(method)}`));
        (call as Promise<unknown>).then(
          (value) => this.send(state, { type: 'reply', id: message.id, ok: true, value }),
          (error: unknown) => this.send(state, { type: 'reply', id: message.id, ok: false, error: toWire(error) }),
        );
        break;
      }
      case 'control': {
        const control = this.options.services.control;
        const [a, b] = Array.isArray(message.args) ? message.args : [];
        // Only the listed methods, with arguments checked: the message comes from another process.
        const call = !control ? Promise.reject(new Error('control is not served'))
          : message.method === 'request' ? control.request(a as ControlRequest)
            : message.method === 'authorizeStream' ? control.authorizeStream(String(a), b)
              : message.method === 'logsAfter' ? control.logsAfter(String(a), Number(b) || 0)
                : Promise.reject(new Error(`unknown control method ${String(message.method)}`));
        (call as Promise<unknown>).then(
          (value) => this.send(state, { type: 'reply', id: message.id, ok: true, value }),
          (error: unknown) => this.send(state, { type: 'reply', id: message.id, ok: false, error: toWire(error) }),
        );
        break;
      }
      case 'reply':
        state.metricsWaiters.get(message.id)?.(Array.isArray(message.value) ? message.value as FamilySnapshot[] : []);
        state.metricsWaiters.delete(message.id);
        break;
      case 'drained':
        state.drained = true;
        break;
    }
  }

  private rotateTicketKeys(): void {
    this.ticketKeys = randomBytes(48);
    this.broadcast({ type: 'ticket-keys', ticketKeys: this.ticketKeys.toString('base64') });
  }

  private broadcast(message: PrimaryMessage): void {
    for (const state of this.states.values()) this.send(state, message);
  }

  private send(state: WorkerState, message: PrimaryMessage): void {
    if (!state.worker.isDead() && state.worker.isConnected()) state.worker.send(message, undefined, undefined, () => {});
  }
}

/**
 * A worker keeps a lease this long after its last request, so that requests a few
 * ms apart (most traffic below saturation) need no round trip to the primary. Short
 * against the idle timeout, which is counted from the last request anyway.
 */
function lingerFor(idleTimeoutMs: number): number {
  return Math.max(0, Math.min(1_000, Math.floor(idleTimeoutMs / 10)));
}
