import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { ConfigError, defaultAlephSettings, defaultControlSettings, defaultNodeSettings, DIAGNOSTIC_PROGRAM_HASH, loadConfig, type RoutingSettings, type Settings } from '../config/index.js';
import { createLogger } from '../common/index.js';
import { createDriver, waitForHttp } from '../drivers/index.js';
import { inheritedSockets, type InheritedSocket, type ListenerInfo } from '../edge/index.js';
import { countDroppedLogLines, familyTotal, MetricsRegistry, mergeSnapshots, renderExposition, type FamilySnapshot } from '../metrics/index.js';
import { Orchestrator, type ReadinessProbe } from '../orchestrator/index.js';
import { AlephProgramSource, LocalProgramSource, MessageStream } from '../programs/index.js';
import { Forwarder } from '../proxy/index.js';
import { ControlService } from '../control/index.js';
import { GuestApi } from '../guestapi/index.js';
import { LocalNodeState, LoginSecret, SystemSampler, diagnosticProgram, selfAddress } from '../nodeapi/index.js';
import { DnsTxtLookup, Router } from '../routing/index.js';
import { startStatusServer, type ReloadResult, type StatusProvider, type StatusServer, type StatusSnapshot } from '../status/index.js';
import { createCertificateManager, type CertificateManager, type CertificateManagerDeps } from '../tls/index.js';
import { availableParallelism } from 'node:os';
import { ClusterFrontend, LocalFrontend, type Frontend } from './frontend.js';
import { SwappablePrograms } from './swappable-programs.js';
import { restartOnlyChanges } from './reload-diff.js';
import { StateLock } from './state-lock.js';

const log = createLogger('node');

/**
 * The node's state directory: the status socket's folder (RuntimeDirectory under
 * systemd), which also holds the records of running programs and the lock.
 */
function stateDirOf(settings: Settings): string {
  return path.dirname(settings.server.statusSocket);
}

export interface NodeOptions {
  version: string;
  /** Sockets handed over by systemd; default: read from the environment. */
  inherited?: InheritedSocket[];
  /** Called when a drain is requested over the status socket; default: drain(). */
  onDrainRequested?: () => void;
  /** ACME tuning (tests): polling, renewal scan period, handshake wait. */
  acme?: CertificateManagerDeps['acme'];
}

const probe: ReadinessProbe = async (endpoint, { path, signal }) => {
  // The orchestrator bounds the wait with boot_timeout through the signal.
  await waitForHttp(endpoint, { path, signal, deadline: Number.MAX_SAFE_INTEGER });
};

/**
 * One aleph-edge node: builds every component from the settings and wires them
 * edge -> routing -> orchestrator -> driver, edge -> proxy.
 */
export class AlephEdgeNode {
  readonly metrics = new MetricsRegistry();
  private settings: Settings;
  private readonly startedAt = Date.now();
  private readonly programs: SwappablePrograms;
  private readonly orchestrator: Orchestrator;
  private readonly forwarder = new Forwarder();
  private router: Router;
  private txt: { settings: RoutingSettings; lookup: DnsTxtLookup } | undefined;
  private certs!: CertificateManager;
  private frontend!: Frontend;
  private status: StatusServer | undefined;
  private draining: Promise<void> | undefined;
  /** programs.source = "aleph": the source and its message stream subscription. */
  private aleph: { source: AlephProgramSource; stream: MessageStream | undefined } | undefined;
  /** [guest_api]: made at start (it needs its socket folder); undefined when disabled. */
  private guestApi: Promise<GuestApi> | undefined;
  private sampler: SystemSampler | undefined;
  private secret: LoginSecret | undefined;
  private readonly control: ControlService;

  private constructor(settings: Settings, private readonly options: NodeOptions, private readonly lock: StateLock) {
    this.settings = settings;
    countDroppedLogLines(this.metrics);
    this.programs = new SwappablePrograms(new LocalProgramSource(settings.programs.local), builtinPrograms(settings));
    this.router = this.buildRouter(settings);
    this.orchestrator = new Orchestrator({
      settings: settings.orchestrator,
      programs: this.programs,
      driver: createDriver(settings.orchestrator.driver, {
        stopGraceMs: settings.orchestrator.stopGraceMs,
        // Next to the status socket (RuntimeDirectory under systemd): records of running
        // programs, so a node restarted after SIGKILL kills what the last one left.
        stateDir: path.join(stateDirOf(settings), 'executions'),
        // Sandboxed programs' unix sockets (their port and guest API), in folders only the node opens.
        runDir: path.join(stateDirOf(settings), 'sandbox'),
        drivers: settings.drivers,
      }),
      probe,
      metrics: this.metrics,
      guest: settings.guestApi.enabled ? { open: async (program, id) => (await this.startGuestApi()).open(program, id) } : undefined,
      // Kept programs (allocations) outlive a restart: the persistent state dir, not the runtime one.
      keptFile: path.join(nodeStateDir(settings), 'kept-programs.json'),
    });
    this.control = this.buildControl();
  }

  private buildControl(): ControlService {
    return new ControlService({
      orchestrator: this.orchestrator,
      programs: this.programs,
      settings: () => ({ control: this.settings.control ?? defaultControlSettings(), domain: this.settings.server.domain, alephApi: this.settings.programs.alephApi }),
      metrics: this.metrics,
    });
  }

  /** The guest API, created on first use; reads from the Aleph source's caches when there is one. */
  private startGuestApi(): Promise<GuestApi> {
    this.guestApi ??= GuestApi.create(this.settings.guestApi, {
      alephApi: this.settings.programs.alephApi,
      cache: {
        message: async (hash) => this.aleph?.source.cachedMessage(hash),
        blob: (hash) => this.aleph?.source.cachedBlob(hash),
      },
      metrics: this.metrics,
    }).catch((error: unknown) => {
      this.guestApi = undefined; // the next boot tries again (e.g. the folder became writable)
      throw error;
    });
    return this.guestApi;
  }

  /**
   * Takes the state directory lock first (NodeAlreadyRunningError when a live node
   * holds it): only then are a previous node's leftovers cleaned up and listeners opened.
   */
  static async start(settings: Settings, options: NodeOptions): Promise<AlephEdgeNode> {
    const lock = StateLock.acquire(stateDirOf(settings), settings.server.statusSocket);
    try {
      const node = new AlephEdgeNode(settings, options, lock);
      await node.startComponents();
      return node;
    } catch (error) {
      lock.release();
      throw error;
    }
  }

  get gateway(): Orchestrator {
    return this.orchestrator;
  }

  listeners(): ListenerInfo[] {
    return this.frontend.describe();
  }

  /** Bound port of the first listener of a kind (tests bind port 0). */
  port(kind: ListenerInfo['protocol']): number | undefined {
    return this.listeners().find((l) => l.protocol === kind)?.port;
  }

  /** Re-reads the config file; an invalid file changes nothing. */
  async reload(): Promise<ReloadResult> {
    let next: Settings;
    try {
      next = await loadConfig(this.settings.file);
    } catch (error) {
      const errors = error instanceof ConfigError ? error.format().split('\n') : [String((error as Error).message)];
      log.error('reload rejected, keeping the running config', { errors: errors.length, first: errors[0] });
      return { ok: false, errors };
    }
    for (const key of restartOnlyChanges(this.settings, next)) {
      log.warn('setting changed but needs a restart to apply', { key });
    }
    // The Aleph source (programs.source = "aleph") stays: its settings apply at restart.
    const removed = this.aleph ? [] : this.programs.known().filter((p) => !next.programs.local.some((l) => l.hash === p.hash));
    this.programs.replace(this.aleph ? this.aleph.source : new LocalProgramSource(next.programs.local), builtinPrograms(next));
    this.router = this.buildRouter(next);
    this.frontend.update(next, this.router);
    this.orchestrator.updateSettings(next.orchestrator);
    this.settings = { ...next, server: this.settings.server, tls: this.settings.tls };
    for (const program of removed) void this.orchestrator.stop(program.hash, 'removed');
    log.info('config reloaded', { programs: next.programs.local.length, routes: next.routes.length, removed: removed.length });
    return { ok: true, errors: [] };
  }

  /** Stops accepting, finishes in-flight requests until the drain deadline, stops every program. */
  drain(): Promise<void> {
    this.draining ??= (async () => {
      const deadline = Date.now() + this.settings.server.drainTimeoutMs;
      log.info('draining', { deadline_s: Math.round(this.settings.server.drainTimeoutMs / 1000) });
      this.control.close();
      await Promise.all([this.frontend.drain(deadline), this.orchestrator.drain(Math.max(0, deadline - Date.now()))]);
      await this.guestApi?.then((api) => api.close(), () => undefined);
      this.forwarder.close();
      this.sampler?.stop();
      this.aleph?.stream?.close();
      await this.status?.close();
      await this.certs.close();
      this.lock.release();
      log.info('drained');
    })();
    return this.draining;
  }

  /**
   * Cuts a running drain short (the operator's second Ctrl-C or SIGTERM): open
   * requests and streams are cut and every program is stopped now; drain()'s
   * promise then settles as usual.
   */
  hurry(): Promise<void> {
    const drained = this.drain();
    log.warn('stopping now: open requests and streams are cut, programs stopped');
    void this.frontend.drain(Date.now());
    this.orchestrator.hurry();
    return drained;
  }

  private buildRouter(settings: Settings): Router {
    // Keep the TXT cache across reloads unless its own settings changed.
    if (!this.txt || !isDeepStrictEqual(this.txt.settings, settings.routing)) {
      this.txt = { settings: settings.routing, lookup: new DnsTxtLookup(settings.routing, { metrics: this.metrics }) };
    }
    return new Router({ domain: settings.server.domain, routes: settings.routes, txt: this.txt.lookup, metrics: this.metrics });
  }

  private async startComponents(): Promise<void> {
    if (this.settings.programs.source === 'aleph') await this.startAlephSource();
    this.certs = await createCertificateManager(this.settings.tls, {
      // On-demand policy: a certificate only for the node itself and hosts that route
      // to a program that exists (a well-formed label alone is any 32 bytes).
      policy: { allow: (host) => this.servesProgram(host) },
      metrics: this.metrics,
      domain: this.settings.server.domain,
      acme: this.options.acme,
    });
    const stateDir = nodeStateDir(this.settings);
    this.secret = await LoginSecret.load(stateDir);
    this.sampler = new SystemSampler({ diskDir: this.settings.programs.aleph?.cacheDir ?? stateDir });
    await this.sampler.start();
    const nodeState = new LocalNodeState({
      version: this.options.version,
      startedAt: this.startedAt,
      settings: () => this.settings,
      executions: () => this.orchestrator.list(),
      listeners: () => this.frontend.describe(),
      sampler: this.sampler,
      secret: this.secret,
      certificates: async () => (await this.certs.list()).map((c) => ({
        host: c.host, source: c.source, issuer: c.issuer, not_after: c.notAfter, renewal_failures: c.renewal?.failures ?? 0,
      })),
    });
    const workers = this.settings.server.workers === 0 ? availableParallelism() : this.settings.server.workers;
    const inherited = this.options.inherited ?? inheritedSockets();
    this.frontend = workers > 1
      ? new ClusterFrontend({
        settings: this.settings, version: this.options.version, workers, inherited,
        services: {
          gateway: this.orchestrator,
          node: nodeState,
          control: this.control,
          certificate: (name) => this.certs.certificate(name),
          httpChallenge: (token) => this.certs.httpChallenge(token),
          alpnChallengeCertificate: (name) => this.certs.alpnChallengeCertificate(name),
          ocspResponse: this.certs.ocspResponse,
        },
      })
      : new LocalFrontend({
        server: this.settings.server,
        certs: this.certs,
        gateway: this.orchestrator,
        nodeState,
        control: this.control,
        routes: this.router,
        forwarder: this.forwarder,
        metrics: this.metrics,
        version: this.options.version,
        alephVmVersion: (this.settings.node ?? defaultNodeSettings()).alephVmVersion,
        inherited,
      });
    try {
      await this.frontend.start();
    } catch (error) {
      this.sampler.stop();
      throw error;
    }
    try {
      this.status = await startStatusServer({
        path: this.settings.server.statusSocket,
        mode: this.settings.server.statusSocketMode,
        provider: this.statusProvider(),
      });
    } catch (error) {
      await this.frontend.drain(Date.now());
      this.sampler.stop();
      throw error;
    }
    await this.orchestrator.resumeKept();
    this.orchestrator.prewarm();
  }

  /** The node's domain, or a host routing to a hash the program source knows as a program. */
  private async servesProgram(host: string): Promise<boolean> {
    const target = await this.router.hostTarget(host);
    if (!target) return false;
    return target.kind === 'node' || this.programs.exists(target.hash);
  }

  /** Programs from the Aleph API; amended or forgotten ones are drained (the next request boots the new version). */
  private async startAlephSource(): Promise<void> {
    const settings = this.settings.programs.aleph ?? defaultAlephSettings();
    const source = await AlephProgramSource.create({
      api: this.settings.programs.alephApi, settings, driver: this.settings.orchestrator.driver, metrics: this.metrics,
    });
    this.programs.replace(source);
    let stream: MessageStream | undefined;
    if (settings.subscribe) {
      stream = new MessageStream({
        url: () => source.client.streamUrl(),
        onMessage: (message) => {
          void source.affected(message).then((hashes) => {
            for (const hash of hashes) {
              log.info('program amended or forgotten on the Aleph network, draining it', { hash: hash.slice(0, 12) });
              void this.orchestrator.stop(hash, 'removed');
            }
          }, (error: Error) => log.warn('could not apply a stream message', { error: error.message }));
        },
      });
      stream.start();
    }
    this.aleph = { source, stream };
  }

  private statusProvider(): StatusProvider {
    return {
      status: async (): Promise<StatusSnapshot> => {
        const certs = await this.certs.list();
        const bySource: Record<string, number> = {};
        for (const cert of certs) bySource[cert.source] = (bySource[cert.source] ?? 0) + 1;
        return {
          version: this.options.version,
          uptime_s: Math.round((Date.now() - this.startedAt) / 1000),
          listeners: this.frontend.describe(),
          draining: this.draining !== undefined,
          vms: this.orchestrator.list(),
          certs: { count: certs.length, by_source: bySource },
          counters: await this.counters(),
          workers: this.frontend.workers(),
        };
      },
      vms: async () => this.orchestrator.list(),
      certs: () => this.certs.list(),
      metrics: async () => renderExposition(await this.metricFamilies()),
      login: async () => {
        const port = selfAddress(this.frontend.describe())?.port ?? 443;
        const authority = port === 443 ? this.settings.server.domain : `${this.settings.server.domain}:${port}`;
        const token = this.secret!.reveal();
        return { token, url: `https://${authority}/about/login?token=${token}` };
      },
      stopVm: (hash) => this.orchestrator.stop(hash, 'requested'),
      instance: async (action, hash) => {
        const running = this.orchestrator.list().some((e) => e.hash === hash && (e.state === 'ready' || e.state === 'starting'));
        if (action === 'erase') return this.orchestrator.erase(hash);
        if (action === 'stop') {
          // Stopped and no longer kept (not started again at the next node start).
          await this.orchestrator.unkeep(hash);
          return running;
        }
        // Kept: restarted when it dies, started again after a node restart. A first start
        // that fails (bad message or parent, no capacity) is not kept: the operator sees why.
        const wasKept = this.orchestrator.kept().some((k) => k.hash === hash);
        await this.orchestrator.keep(hash, 'operator');
        try {
          await this.orchestrator.start(hash);
        } catch (error) {
          if (!wasKept) await this.orchestrator.unkeep(hash).catch(() => undefined);
          throw error;
        }
        return !running;
      },
      reload: () => this.reload(),
      drain: async () => {
        // Answer the caller first; the owner decides what follows the drain (the CLI exits).
        setImmediate(() => (this.options.onDrainRequested ?? (() => void this.drain()))());
      },
    };
  }

  /** This process's metrics and its workers' (labelled worker="<index>"), one family at a time. */
  private async metricFamilies(): Promise<FamilySnapshot[]> {
    return mergeSnapshots([{ families: this.metrics.snapshot() }, ...await this.frontend.metrics()]);
  }

  /** Headline counters, summed over this process and its workers. */
  private async counters(): Promise<Record<string, number>> {
    const families = await this.metricFamilies();
    const out: Record<string, number> = {};
    for (const [key, name] of Object.entries(HEADLINE_COUNTERS)) out[key] = familyTotal(families, name);
    return out;
  }
}

/** The status summary's counters, by the key it shows them under. */
const HEADLINE_COUNTERS: Record<string, string> = {
  requests: 'aleph_edge_requests_total',
  errors: 'aleph_edge_errors_total',
  boots: 'aleph_edge_boots_total',
  boot_failures: 'aleph_edge_boot_failures_total',
  evictions: 'aleph_edge_evictions_total',
};

/** The login secret's directory: node.state_dir, else the folder holding tls.storage (/var/lib/aleph-edge). */
function nodeStateDir(settings: Settings): string {
  return settings.node?.stateDir || path.dirname(settings.tls.storage);
}

/**
 * The shipped diagnostic program, when node.check_program is its hash and nothing
 * else defines that hash: under the process driver it runs from examples/diagnostic/.
 */
function builtinPrograms(settings: Settings): LocalProgramSource | undefined {
  const node = settings.node ?? defaultNodeSettings();
  if (node.checkProgram !== DIAGNOSTIC_PROGRAM_HASH || settings.orchestrator.driver !== 'process') return undefined;
  if (settings.programs.local.some((p) => p.hash === node.checkProgram)) return undefined;
  return new LocalProgramSource([diagnosticProgram({
    hash: node.checkProgram, node, stateDir: path.join(nodeStateDir(settings), 'diagnostic'),
  })]);
}
