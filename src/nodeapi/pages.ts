// The node's public pages on server.domain, in the reference supervisor's shapes.
// Served in whichever process handles the request; state comes from NodeState.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createLogger } from '../common/index.js';
import { executionRecords, executionsV1, executionsV2 } from './executions.js';
import { renderIndex } from './index-page.js';
import { PAGE_SCRIPT, PAGE_STYLE } from './page-assets.js';
import type { ExecutionInfo } from '../orchestrator/index.js';
import { NEWER_CHECKS, REQUIRED_CHECKS, type DiagnosticResult, type ExecutionState, type NodeState } from './types.js';
import { compareVersions, parseVersion } from './version.js';

const log = createLogger('nodeapi');

interface Answer {
  status: number;
  type: keyof typeof CONTENT_TYPES;
  body: unknown;
  headers?: Record<string, string>;
}

const json = (body: unknown, status = 200, headers?: Record<string, string>): Answer => ({ status, type: 'json', body, headers });
const text = (body: string, status = 200): Answer => ({ status, type: 'text', body });
const unauthorized = (): Answer => json({ success: false, error: 'login required: open the URL printed by `aleph-edge login-url`' }, 401);

const CONTENT_TYPES = {
  json: 'application/json', html: 'text/html; charset=utf-8', text: 'text/plain; charset=utf-8',
  js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8',
} as const;

// The index page runs only the node's own script and talks to the node (and, on the
// operator's click, GitHub's API for aleph-vm's latest release).
const INDEX_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' https://api.github.com; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** An execution without what only the operator should see (endpoint, pid, error text). */
function executionState(e: ExecutionInfo): ExecutionState {
  return {
    hash: e.hash, name: e.name, state: e.state, driver: e.driver, started_at: e.started_at, ready_at: e.ready_at,
    last_request_at: e.last_request_at, requests: e.requests, in_flight: e.in_flight, memory_mib: e.memory_mib, restarts: e.restarts,
  };
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export class NodePages {
  /** Headers naming this node's software on every answer of the node's own (pages, errors, the :80 redirect). */
  readonly identityHeaders: Readonly<Record<string, string>>;

  /**
   * `version` is aleph-edge's own; `alephVmVersion` the aleph-vm release whose API we
   * answer. The network's monitor scores a node by `Server: aleph-vm/<known release>`
   * (regex `^aleph-vm/(.*)$`), so Server carries that, and our own name goes in
   * X-Aleph-Edge-Version (and on the index page).
   */
  constructor(private readonly state: NodeState, private readonly version: string, private readonly alephVmVersion: string) {
    this.identityHeaders = Object.freeze({ server: `aleph-vm/${alephVmVersion}`, 'x-aleph-edge-version': version });
  }

  /** Answers one request for a node page; `target` is the validated origin-form path + query. */
  async handle(req: IncomingMessage, res: ServerResponse, target: string): Promise<void> {
    let answer: Answer;
    try {
      answer = await this.answer(req, target);
    } catch (error) {
      // The state's owner failed (IPC gone, sampler not ready): say so, never how.
      log.error('node page failed', { path: target.split('?')[0], error: (error as Error).message });
      answer = text('503 node state unavailable\n', 503);
    }
    this.write(req, res, answer);
  }

  private async answer(req: IncomingMessage, target: string): Promise<Answer> {
    const url = new URL(target, 'https://node.invalid');
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    if (req.method === 'OPTIONS') return { status: 204, type: 'text', body: '', headers: { 'access-control-allow-methods': 'GET, HEAD, OPTIONS' } };
    if (path.startsWith('/control/') || path === '/control') {
      return text('501 /control/* needs signed (EIP-191) requests from the scheduler and wallet owners; aleph-edge does not implement it yet\n', 501);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return { ...text(`405 ${req.method} not allowed\n`, 405), headers: { allow: 'GET, HEAD, OPTIONS' } };
    const s = this.state;
    switch (path) {
      case '/': {
        const body = renderIndex(await s.overview(), this.alephVmVersion);
        return { status: 200, type: 'html', body, headers: { 'content-security-policy': INDEX_CSP } };
      }
      case '/about/page/node.js': return { status: 200, type: 'js', body: PAGE_SCRIPT };
      case '/about/page/node.css': return { status: 200, type: 'css', body: PAGE_STYLE };
      case '/about/usage/history': return json(await s.usageHistory());
      case '/about/executions/states': return json((await s.executions()).map(executionState));
      case '/about/tls/certificates': return json(await s.certificates());
      case '/about': return text(`aleph-edge ${this.version}\n`);
      case '/status': {
        const o = await s.overview();
        return json({ status: 'ok', version: o.version, uptime_s: o.uptime_s });
      }
      case '/about/usage/system': return json(await s.usage());
      case '/about/capability': return json(await s.capability());
      case '/about/executions/list': return json(executionsV1(await s.executions()));
      case '/v2/about/executions/list': return json(executionsV2(await s.executions()));
      case '/about/executions/records': return json(executionRecords(await s.executions()));
      // The reference's answer on a node without confidential computing (no SEV here: no platform certificates).
      case '/about/certificates': return text('Confidential computing setting not enabled on that server', 503);
      case '/about/login': return this.login(url.searchParams.get('token'));
      case '/about/config': return (await this.loggedIn(req)) ? json(await s.effectiveConfig()) : unauthorized();
      case '/about/executions/details': {
        if (!(await this.loggedIn(req))) return unauthorized();
        const list = await s.executions();
        return json(Object.fromEntries(list.map((e) => [e.hash, e])));
      }
      case '/status/check/fastapi': return this.checkFastapi(url.searchParams.get('retro-compatibility') === 'true');
      case '/status/check/host': {
        const result = await s.checkHost();
        const ok = [result.ipv4, result.ipv6].every((f) => f.egress && f.dns && f.domain);
        return json(result, ok ? 200 : 503);
      }
      case '/status/check/ipv6': {
        const [host, diagnostic] = await Promise.all([s.checkHostIpv6(), s.checkDiagnostic()]);
        return json({ host, vm: diagnostic.ipv6 === true });
      }
      case '/status/check/version': return this.checkVersion(url.searchParams.get('reference'));
      case '/status/config': return json(await s.publicConfig());
      default: return text('404 no such page\n', 404);
    }
  }

  private async login(token: string | null): Promise<Answer> {
    if (!token || !(await this.state.verifyToken(token))) return json({ success: false }, 401);
    return {
      status: 302,
      type: 'text',
      body: '',
      headers: {
        location: '/about/config',
        'set-cookie': `token=${token}; Path=/; HttpOnly; Secure; SameSite=Strict`,
      },
    };
  }

  private async loggedIn(req: IncomingMessage): Promise<boolean> {
    const token = cookie(req, 'token');
    return token !== undefined && token !== '' && (await this.state.verifyToken(token));
  }

  private async checkFastapi(retro: boolean): Promise<Answer> {
    const full = await this.state.checkDiagnostic();
    const result: Partial<DiagnosticResult> = { ...full };
    delete result.ipv6;
    if (retro) for (const name of NEWER_CHECKS) delete result[name];
    const required = REQUIRED_CHECKS.filter((name) => !retro || !(NEWER_CHECKS as readonly string[]).includes(name));
    return json(result, required.every((name) => full[name]) ? 200 : 503);
  }

  /** The reference compares its own release: ours is the aleph-vm release whose API we answer, as in `Server`. */
  private checkVersion(reference: string | null): Answer {
    if (!reference) return text("Query field '?reference=' must be specified\n", 400);
    const wanted = parseVersion(reference);
    if (!wanted) return text(`'${reference.slice(0, 64).replace(/[^\w.+-]/g, '?')}' is not a version\n`, 400);
    const ours = this.alephVmVersion;
    const current = parseVersion(ours);
    if (!current) return text(`this node's version "${ours}" cannot be compared\n`, 503);
    return compareVersions(current, wanted) >= 0
      ? text(`Up-to-date: version ${ours} >= ${reference}`)
      : text(`Outdated: version ${ours} < ${reference}`, 403);
  }

  private write(req: IncomingMessage, res: ServerResponse, answer: Answer): void {
    if (res.headersSent || res.destroyed) return;
    const body = answer.type === 'json' ? JSON.stringify(answer.body) : String(answer.body);
    res.writeHead(answer.status, {
      'content-type': CONTENT_TYPES[answer.type],
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'access-control-allow-origin': '*',
      ...this.identityHeaders,
      ...answer.headers,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}
