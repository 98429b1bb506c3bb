// /control/* in the process that owns the orchestrator: scheduler allocations, paid
// instance notifications and owner operations, in the reference supervisor's shapes
// (aleph-vm views: update_allocations, notify_allocation, operator.py). Every request
// is authenticated before anything starts or stops; refusals change nothing.

import { fetch } from 'undici'; // the project's undici, never Node's bundled one (see programs/aleph/client.ts)
import { createLogger, EdgeError, isProgramHash, shortHash } from '../common/index.js';
import type { ControlSettings } from '../config/index.js';
import type { Counter, MetricsRegistry } from '../metrics/index.js';
import type { ProgramSource } from '../programs/index.js';
import { AllocationAuth } from './allocation-auth.js';
import { ControlError, statusOf } from './errors.js';
import { authenticateHeaders, authenticateMessage } from './operator-auth.js';
import { Owners } from './owners.js';
import type { ControlGateway, ControlReply, ControlRequest, ControlTarget, LogBatch, StreamAuth } from './types.js';

const log = createLogger('control');

export interface ControlServiceDeps {
  orchestrator: ControlTarget;
  programs: ProgramSource;
  /** Read on every request (reload). */
  settings: () => { control: ControlSettings; domain: string; alephApi: string };
  metrics?: MetricsRegistry;
}

const MACHINE = /^\/control\/machine\/([^/]+)\/(stop|reboot|erase|expire|update|logs|stream_logs)$/;
const MAX_EXPIRE_S = 10 * 24 * 3600;
const FETCH_TIMEOUT_MS = 10_000;
const MAX_API_ANSWER = 1024 * 1024;

type Operation = 'stop' | 'reboot' | 'erase' | 'expire' | 'logs' | 'update';
const OPERATION_METHODS: Record<Operation, string> = { stop: 'POST', reboot: 'POST', erase: 'POST', expire: 'POST', update: 'POST', logs: 'GET' };

export class ControlService implements ControlGateway {
  private readonly allocationAuth: AllocationAuth;
  private readonly owners: Owners;
  /** Allocations are applied one at a time, in arrival order. */
  private allocating: Promise<unknown> = Promise.resolve();
  private readonly expiries = new Map<string, NodeJS.Timeout>();
  private readonly answered: Counter | undefined;

  constructor(private readonly deps: ControlServiceDeps) {
    this.allocationAuth = new AllocationAuth(() => deps.settings().control);
    this.owners = new Owners(() => deps.settings().alephApi);
    this.answered = deps.metrics?.counter('aleph_edge_control_requests_total', '/control/* answers, by kind (allocations, notify, operation) and status');
  }

  async request(request: ControlRequest): Promise<ControlReply> {
    let reply: ControlReply;
    try {
      reply = await this.route(request);
    } catch (error) {
      if (error instanceof ControlError) {
        reply = refusal(error);
      } else {
        log.error('control request failed', { path: request.path, error: (error as Error).message });
        reply = text(500, 'Internal error');
      }
    }
    const kind = request.path === '/control/allocations' ? 'allocations' : request.path === '/control/allocation/notify' ? 'notify' : MACHINE.test(request.path) ? 'operation' : 'other';
    this.answered?.inc({ kind, status: String(reply.status) });
    return reply;
  }

  async authorizeStream(path: string, auth: unknown): Promise<StreamAuth> {
    const match = MACHINE.exec(path);
    if (!match || match[2] !== 'stream_logs' || !isProgramHash(match[1]!)) return { ok: false, reason: 'Invalid ref' };
    const hash = match[1]!;
    try {
      const sender = authenticateMessage(auth, this.deps.settings().domain);
      const owner = await this.ownerOf(hash);
      if (!(await this.owners.authorized(sender, owner))) return { ok: false, reason: 'unauthorized sender' };
      return { ok: true, hash };
    } catch (error) {
      if (error instanceof ControlError) return { ok: false, reason: error.message };
      throw error;
    }
  }

  async logsAfter(hash: string, after: number): Promise<LogBatch> {
    const entries = this.deps.orchestrator.logs(hash).filter((e) => e.seq > after).map(({ timestamp, stream, line, seq }) => ({ timestamp, stream, line, seq }));
    return { entries, running: this.running(hash) };
  }

  /** Cancels pending expiries (drain). */
  close(): void {
    for (const timer of this.expiries.values()) clearTimeout(timer);
    this.expiries.clear();
  }

  private async route(request: ControlRequest): Promise<ControlReply> {
    const body = Buffer.from(request.body, 'base64');
    if (request.path === '/control/allocations') {
      if (request.method !== 'POST') return methodNotAllowed('POST');
      return this.allocations(request, body);
    }
    if (request.path === '/control/allocation/notify') {
      if (request.method !== 'POST') return methodNotAllowed('POST');
      return this.notify(body);
    }
    const match = MACHINE.exec(request.path);
    if (!match || match[2] === 'stream_logs') return text(404, 'Not Found');
    const operation = match[2] as Operation;
    if (request.method !== OPERATION_METHODS[operation]) return methodNotAllowed(OPERATION_METHODS[operation]);
    // As the reference: update takes no authentication (it only re-reads configuration).
    if (operation === 'update') return this.update(match[1]!);
    const sender = authenticateHeaders(request.headers['x-signedpubkey'], request.headers['x-signedoperation'], {
      domain: this.deps.settings().domain, method: request.method, path: request.path,
    });
    const hash = match[1]!;
    if (!isProgramHash(hash)) throw new ControlError('bad_request', `Invalid ref: '${clip(hash)}'`);
    if (operation === 'logs') {
      if (!this.running(hash) && this.deps.orchestrator.logs(hash).length === 0) throw new ControlError('not_found', 'No execution found for this VM');
    } else if (!this.known(hash)) {
      throw new ControlError('not_found', `No virtual machine with ref ${hash}`);
    }
    const owner = await this.ownerOf(hash);
    if (!(await this.owners.authorized(sender, owner))) {
      log.warn('owner operation refused', { hash: shortHash(hash), operation, sender });
      throw new ControlError('forbidden', 'Unauthorized sender');
    }
    log.info('owner operation', { hash: shortHash(hash), operation, sender });
    switch (operation) {
      case 'stop': return this.stop(hash);
      case 'reboot': return this.reboot(hash);
      case 'erase': return this.erase(hash);
      case 'expire': return this.expire(hash, request, body);
      case 'logs': return this.logs(hash);
    }
  }

  // --- scheduler ------------------------------------------------------------

  private async allocations(request: ControlRequest, body: Buffer): Promise<ControlReply> {
    this.allocationAuth.verify(request, body);
    const allocation = parseAllocation(body);
    const run = this.allocating.then(() => this.applyAllocation(allocation));
    this.allocating = run.catch(() => undefined);
    return run;
  }

  private async applyAllocation(allocation: Allocation): Promise<ControlReply> {
    const { orchestrator } = this.deps;
    const wanted = new Set([...allocation.persistentVms, ...allocation.instances]);
    // First free what the scheduler no longer allocates (only what an allocation kept: paid instances stay).
    const stopped: string[] = [];
    for (const { hash, reason } of orchestrator.kept()) {
      if (reason !== 'allocation' || wanted.has(hash)) continue;
      log.info('allocation no longer lists a program, stopping it', { hash: shortHash(hash) });
      await orchestrator.unkeep(hash);
      stopped.push(hash);
    }
    const errors: Record<string, string> = {};
    const keptAlready = new Map(orchestrator.kept().map((k) => [k.hash, k.reason]));
    for (const hash of wanted) {
      try {
        await withTimeout(this.deps.programs.resolve(hash), FETCH_TIMEOUT_MS, 'resolving the program timed out');
        if (!keptAlready.has(hash)) log.info('allocated, starting', { hash: shortHash(hash) });
        // Kept already (maybe stopped by its owner): started again if down; a paid instance keeps its reason.
        await orchestrator.keep(hash, keptAlready.get(hash) ?? 'allocation');
      } catch (error) {
        log.warn('allocation could not take a program', { hash: shortHash(hash), error: (error as Error).message });
        errors[hash] = reprOf(error);
      }
    }
    if (allocation.onDemandVms.length > 0) log.warn('Not supported yet: allocation.on_demand_vms');
    if (allocation.jobs.length > 0) log.warn('Not supported yet: allocation.jobs');
    const failing = Object.keys(errors);
    const successful = [...wanted].filter((h) => !(h in errors));
    const status = failing.length === 0 ? 200 : successful.length === 0 ? 503 : 207;
    return json(status, { success: failing.length === 0, successful, failing, stopped, errors });
  }

  /** A user announces a paid instance. Only what the node can verify from its Aleph API is accepted. */
  private async notify(body: Buffer): Promise<ControlReply> {
    let data: unknown;
    try {
      data = JSON.parse(body.toString('utf8'));
    } catch {
      return text(400, 'Body is not valid JSON');
    }
    const hash = (data as { instance?: unknown } | null)?.instance;
    if (typeof hash !== 'string' || !isProgramHash(hash)) return json(400, [{ type: 'value_error', loc: ['instance'], msg: 'expected an item hash (64 hex)' }]);
    const message = await this.fetchMessage(hash);
    if (!message) return text(404, `Message not found: ${hash}`);
    if (message.type !== 'INSTANCE') return text(400, 'Message is not an instance');
    const content = (message.content ?? {}) as { address?: unknown; payment?: { type?: unknown } };
    const payment = typeof content.payment?.type === 'string' ? content.payment.type : 'hold';
    const payer = typeof content.address === 'string' ? content.address : typeof message.sender === 'string' ? message.sender : '';
    // Verified from the Aleph API: hold (the token balance covers the price; the reference
    // checks it only for GPU and confidential instances, this node for every one) and
    // credit (an hour of credits). A superfluid stream needs a chain RPC: refused.
    if (payment === 'hold') {
      const [balance, price] = await Promise.all([this.apiNumber(`/api/v0/addresses/${encodeURIComponent(payer)}/balance`, 'balance'), this.apiNumber(`/api/v0/price/${hash}`, 'cost')]);
      if (price > balance) return text(402, `Insufficient balance for this instance\n\nRequired: ${price} token \nCurrent user balance: ${balance}`);
    } else if (payment === 'credit') {
      const [credits, perSecond] = await Promise.all([this.apiNumber(`/api/v0/addresses/${encodeURIComponent(payer)}/balance`, 'credit_balance'), this.apiNumber(`/api/v0/price/${hash}`, 'cost')]);
      const required = perSecond * 3600;
      if (required > credits) return text(402, `Insufficient credits for this instance\n\nRequired: ${required} credits \nCurrent user credits: ${credits}`);
    } else {
      return text(400, 'Invalid payment method');
    }
    try {
      await withTimeout(this.deps.programs.resolve(hash), FETCH_TIMEOUT_MS, 'resolving the instance timed out');
      await this.deps.orchestrator.keep(hash, 'notify');
      return json(200, { success: true, successful: true, failing: [], errors: {} });
    } catch (error) {
      return json(503, { success: false, successful: false, failing: [hash], errors: { [hash]: reprOf(error) } });
    }
  }

  private async fetchMessage(hash: string): Promise<{ type?: unknown; sender?: unknown; content?: unknown } | undefined> {
    const body = await this.apiJson(`/api/v0/messages/${hash}`);
    return (body as { message?: { type?: unknown; sender?: unknown; content?: unknown } } | undefined)?.message;
  }

  /** A JSON answer of the node's Aleph API; undefined for 404. Unreachable or malformed: 503, nothing started. */
  private async apiJson(path: string): Promise<unknown> {
    const api = this.deps.settings().alephApi.replace(/\/+$/, '');
    let res: Response;
    try {
      res = await fetch(`${api}${path}`, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    } catch (error) {
      throw new ControlError('unavailable', `Aleph API unreachable: ${(error as Error).message}`);
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new ControlError('unavailable', `Aleph API answered ${res.status}`);
    }
    if (Number(res.headers.get('content-length') ?? 0) > MAX_API_ANSWER) {
      await res.body?.cancel();
      throw new ControlError('unavailable', 'Aleph API answer too large');
    }
    const text = await res.text();
    if (text.length > MAX_API_ANSWER) throw new ControlError('unavailable', 'Aleph API answer too large');
    try {
      return JSON.parse(text);
    } catch {
      throw new ControlError('unavailable', 'Aleph API answered something else than JSON');
    }
  }

  /** A number field of an Aleph API answer (the API writes decimals as numbers or strings); 0 when absent, as the reference. */
  private async apiNumber(path: string, field: string): Promise<number> {
    const value = ((await this.apiJson(path)) as Record<string, unknown> | undefined)?.[field] ?? 0;
    const number = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
    if (!Number.isFinite(number)) throw new ControlError('unavailable', `Aleph API gave no number for ${field}`);
    return number;
  }

  // --- owner operations -----------------------------------------------------

  private async stop(hash: string): Promise<ControlReply> {
    if (!this.running(hash)) return text(200, 'Already stopped, nothing to do');
    await this.deps.orchestrator.stop(hash, 'requested');
    return text(200, `Stopped VM with ref ${hash}`);
  }

  private async reboot(hash: string): Promise<ControlReply> {
    const wasRunning = this.running(hash);
    if (wasRunning) await this.deps.orchestrator.stop(hash, 'requested');
    void this.start(hash);
    return text(200, wasRunning ? `Rebooted VM with ref ${hash}` : `Starting VM (was not running) with ref ${hash}`);
  }

  private async erase(hash: string): Promise<ControlReply> {
    // Stopped and no longer kept: the next allocation or request decides whether it runs again, with empty volumes.
    if (this.deps.orchestrator.kept().some((k) => k.hash === hash)) await this.deps.orchestrator.unkeep(hash);
    else await this.deps.orchestrator.stop(hash, 'requested');
    await this.deps.programs.eraseVolumes?.(hash);
    // An instance's disk goes too (nothing for programs without one).
    await this.deps.orchestrator.erase(hash);
    return text(200, `Erased VM with ref ${hash}`);
  }

  private expire(hash: string, request: ControlRequest, body: Buffer): ControlReply {
    const timeout = expireTimeout(request.query, body);
    if (timeout === undefined || !(timeout > 0 && timeout < MAX_EXPIRE_S)) return text(400, 'Invalid timeout duration');
    clearTimeout(this.expiries.get(hash));
    const timer = setTimeout(() => {
      this.expiries.delete(hash);
      log.info('expired by its owner, stopping', { hash: shortHash(hash) });
      const { orchestrator } = this.deps;
      const done = orchestrator.kept().some((k) => k.hash === hash) ? orchestrator.unkeep(hash) : orchestrator.stop(hash, 'requested');
      void done.catch((error: Error) => log.warn('could not stop an expired program', { hash: shortHash(hash), error: error.message }));
    }, timeout * 1000);
    timer.unref();
    this.expiries.set(hash, timer);
    return text(200, `Expiring VM with ref ${hash} in ${timeout} seconds`);
  }

  private logs(hash: string): ControlReply {
    const entries = this.deps.orchestrator.logs(hash).map((e) => ({
      SYSLOG_IDENTIFIER: `vm-${hash}-${e.stream}`,
      MESSAGE: e.line,
      file: e.stream,
      __REALTIME_TIMESTAMP: new Date(e.timestamp).toISOString(),
    }));
    return json(200, entries);
  }

  private update(ref: string): ControlReply {
    if (!isProgramHash(ref)) return text(400, `Invalid ref: '${clip(ref)}'`);
    if (!this.known(ref)) return text(404, 'VM not found');
    // Nothing to re-read yet: port forwarding comes with instances.
    return json(200, {});
  }

  // --- helpers --------------------------------------------------------------

  private async start(hash: string): Promise<void> {
    try {
      (await this.deps.orchestrator.acquire(hash)).release(0);
    } catch (error) {
      log.warn('could not start the program again', { hash: shortHash(hash), error: (error as Error).message });
    }
  }

  private running(hash: string): boolean {
    return this.deps.orchestrator.list().some((e) => e.hash === hash && (e.state === 'starting' || e.state === 'ready' || e.state === 'draining'));
  }

  /** An execution of it runs, or the node keeps it (the reference's "in the pool"). */
  private known(hash: string): boolean {
    return this.running(hash) || this.deps.orchestrator.kept().some((k) => k.hash === hash);
  }

  private async ownerOf(hash: string): Promise<string> {
    try {
      const program = await withTimeout(this.deps.programs.resolve(hash), FETCH_TIMEOUT_MS, 'resolving the program timed out');
      return program.sender ?? '';
    } catch {
      return '';
    }
  }
}

interface Allocation {
  persistentVms: string[];
  instances: string[];
  onDemandVms: string[];
  jobs: string[];
}

function parseAllocation(body: Buffer): Allocation {
  let data: unknown;
  try {
    data = JSON.parse(body.toString('utf8'));
  } catch {
    throw new ControlError('bad_request', 'Body is not valid JSON');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new ControlError('bad_request', 'expected a JSON object');
  const field = (name: string, optional: boolean): string[] => {
    const value = (data as Record<string, unknown>)[name];
    if (value === undefined || (optional && value === null)) return [];
    if (!Array.isArray(value)) throw new ControlError('bad_request', `${name}: expected a list of item hashes`);
    const out = new Set<string>();
    value.forEach((item, i) => {
      if (typeof item !== 'string' || !isProgramHash(item)) throw new ControlError('bad_request', `${name}[${i}]: expected an item hash (64 lowercase hex)`);
      out.add(item);
    });
    return [...out];
  };
  return { persistentVms: field('persistent_vms', false), instances: field('instances', false), onDemandVms: field('on_demand_vms', true), jobs: field('jobs', true) };
}

function expireTimeout(query: string, body: Buffer): number | undefined {
  const fromQuery = new URLSearchParams(query).get('timeout');
  if (fromQuery !== null) return fromQuery.trim() === '' ? undefined : Number(fromQuery);
  if (body.length === 0) return undefined;
  try {
    const value = (JSON.parse(body.toString('utf8')) as { timeout?: unknown } | null)?.timeout;
    return typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : undefined;
  } catch {
    return undefined;
  }
}

/** The error as the reference shows it (Python repr): the class name and its public message. */
function reprOf(error: unknown): string {
  const name = error instanceof EdgeError || error instanceof ControlError ? error.name : 'Exception';
  const message = error instanceof EdgeError || error instanceof ControlError ? error.message : 'Unhandled Error';
  return `${name}(${JSON.stringify(message)})`;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

function refusal(error: ControlError): ControlReply {
  const status = statusOf(error.code);
  return error.shape === 'json' ? json(status, { error: error.message }) : text(status, error.message);
}

function json(status: number, value: unknown): ControlReply {
  return { status, contentType: 'application/json', body: JSON.stringify(value) };
}

function text(status: number, body: string): ControlReply {
  return { status, contentType: 'text/plain; charset=utf-8', body };
}

function methodNotAllowed(allowed: string): ControlReply {
  return text(405, `Method Not Allowed (use ${allowed})`);
}

function clip(value: string): string {
  return value.length > 80 ? `${value.slice(0, 80)}…` : value;
}
