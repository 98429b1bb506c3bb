// /status/check/fastapi and /status/check/host. The diagnostic program is called
// through the node's own HTTPS listener and routing (/vm/<hash>/...), as a monitor
// would, so a pass means the whole path works: routing, boot, proxy, program.

import { lookup } from 'node:dns/promises';
import { createLogger } from '../common/index.js';
import { probe, type ProbeReply } from './probe.js';
import type { DiagnosticResult, HostCheckResult, HostFamilyCheck } from './types.js';

const log = createLogger('nodeapi');

/** Monitors time out at 20 s; the answer must be out before, cold boot included. */
export const DIAGNOSTIC_BUDGET_MS = 18_000;

export interface SelfAddress {
  host: string;
  port: number;
}

export interface DiagnosticTarget {
  hash: string;
  domain: string;
  /** Where the node's HTTPS listener is reachable from here. */
  self(): SelfAddress | undefined;
}

type Get = (path: string) => Promise<ProbeReply>;

async function json(get: Get, path: string): Promise<unknown> {
  const reply = await get(path);
  if (reply.status !== 200) throw new Error(`${path}: HTTP ${reply.status}`);
  return JSON.parse(reply.body) as unknown;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

// Each check resolves to a boolean; any failure (HTTP error, bad JSON, wrong shape) is false.
const CHECKS: Record<keyof Omit<DiagnosticResult, 'index'>, (get: Get) => Promise<boolean>> = {
  environ: async (get) => {
    const env = await json(get, '/environ');
    return isObject(env) && ['ALEPH_API_HOST', 'ALEPH_API_UNIX_SOCKET', 'ALEPH_REMOTE_CRYPTO_HOST', 'ALEPH_REMOTE_CRYPTO_UNIX_SOCKET', 'ALEPH_ADDRESS_TO_USE'].every((name) => name in env);
  },
  messages: async (get) => {
    const body = await json(get, '/messages');
    const messages = isObject(body) && isObject(body.Messages) ? body.Messages.messages : undefined;
    return Array.isArray(messages) && isObject(messages[0]) && typeof messages[0].item_hash === 'string';
  },
  dns: async (get) => {
    const body = await json(get, '/dns');
    return isObject(body) && Array.isArray(body.ipv4) && body.ipv4.length > 0 && Array.isArray(body.ipv6) && body.ipv6.length > 0;
  },
  ipv4: async (get) => {
    const body = await json(get, '/ip/4');
    return isObject(body) && body.result === true;
  },
  ipv6: async (get) => {
    const body = await json(get, '/ip/6');
    return isObject(body) && body.result === true;
  },
  internet: async (get) => {
    const body = await json(get, '/internet');
    return isObject(body) && body.result === 200 && isObject(body.headers) && Object.keys(body.headers).some((name) => name.toLowerCase() === 'server');
  },
  cache: async (get) => {
    if ((await json(get, '/cache/set/a/42')) !== true) return false;
    if ((await json(get, '/cache/get/a')) !== '42') return false;
    const keys = await json(get, '/cache/keys');
    return Array.isArray(keys) && keys.includes('a');
  },
  persistent_storage: async (get) => {
    const first = await json(get, '/state/increment');
    const second = await json(get, '/state/increment');
    if (!isObject(first) || !isObject(second) || typeof first.counter !== 'number' || typeof second.counter !== 'number') return false;
    return second.counter >= first.counter + 1; // >=: another caller may increment in between
  },
  error_handling: async (get) => (await get('/raise')).status === 500,
  get_a_message: async (get) => {
    const body = await json(get, '/get_a_message');
    return isObject(body) && typeof body.item_hash === 'string';
  },
  lifespan: async (get) => {
    const body = await json(get, '/lifespan');
    return isObject(body) && body.Lifespan === true;
  },
};

/** Runs every check against the diagnostic program, within the monitors' budget. */
export async function runDiagnostic(target: DiagnosticTarget, budgetMs = DIAGNOSTIC_BUDGET_MS): Promise<DiagnosticResult> {
  const signal = AbortSignal.timeout(budgetMs);
  const self = target.self();
  const get: Get = (path) => {
    if (!self) return Promise.reject(new Error('the node has no HTTPS listener it can reach'));
    return probe({
      url: `https://${target.domain}/vm/${target.hash}${path}`,
      connectTo: self,
      hostHeader: target.domain,
      signal,
    });
  };
  const attempt = async (name: string, check: () => Promise<boolean>): Promise<boolean> => {
    try {
      return await check();
    } catch (error) {
      log.debug('diagnostic check failed', { check: name, error: (error as Error).message });
      return false;
    }
  };
  // The index first: it boots the program when cold; the rest then run side by side.
  const index = await attempt('index', async () => {
    const body = await json(get, '/');
    return isObject(body) && body.Example === 'example_fastapi';
  });
  const names = Object.keys(CHECKS) as Array<keyof typeof CHECKS>;
  const results = await Promise.all(names.map((name) => attempt(name, () => CHECKS[name](get))));
  const result = { index } as DiagnosticResult;
  names.forEach((name, i) => { result[name] = results[i]!; });
  return result;
}

export interface HostCheckOptions {
  ipv4Url: string;
  ipv6Url: string;
  dnsHostname: string;
  domain: string;
  /** The node's HTTPS port, for the http check (the domain must reach this node). */
  httpsPort(): number;
  version: string;
  timeoutMs: number;
}

async function families(host: string): Promise<{ v4: string | undefined; v6: string | undefined }> {
  try {
    const all = await lookup(host, { all: true });
    return { v4: all.find((a) => a.family === 4)?.address, v6: all.find((a) => a.family === 6)?.address };
  } catch {
    return { v4: undefined, v6: undefined };
  }
}

async function reachable(url: string, family: 4 | 6, timeoutMs: number): Promise<boolean> {
  try {
    // Any HTTP answer proves egress (Quad9's HTTPS endpoint answers 404 to "/").
    const reply = await probe({ url, family, signal: AbortSignal.timeout(timeoutMs), maxBodyBytes: 4096 });
    return reply.status > 0;
  } catch {
    return false;
  }
}

export async function hostEgressIpv6(options: HostCheckOptions): Promise<boolean> {
  return reachable(options.ipv6Url, 6, options.timeoutMs);
}

export async function runHostChecks(options: HostCheckOptions): Promise<HostCheckResult> {
  const [egress4, egress6, dns, domain] = await Promise.all([
    reachable(options.ipv4Url, 4, options.timeoutMs),
    reachable(options.ipv6Url, 6, options.timeoutMs),
    families(options.dnsHostname),
    families(options.domain),
  ]);
  // http: the domain's address answers as this node (its X-Aleph-Edge-Version).
  const http = async (address: string | undefined): Promise<boolean> => {
    if (!address) return false;
    try {
      const reply = await probe({
        url: `https://${options.domain}/status/check/version?reference=0`,
        connectTo: { host: address, port: options.httpsPort() },
        hostHeader: options.domain,
        signal: AbortSignal.timeout(options.timeoutMs),
        maxBodyBytes: 4096,
      });
      // Server names the aleph-vm API release (shared with every aleph-vm node); this header names us.
      return reply.headers['x-aleph-edge-version'] === options.version;
    } catch {
      return false;
    }
  };
  const [http4, http6] = await Promise.all([http(domain.v4), http(domain.v6)]);
  const family = (egress: boolean, dnsOk: boolean, domainOk: boolean, httpOk: boolean): HostFamilyCheck => ({ egress, dns: dnsOk, domain: domainOk, http: httpOk });
  return {
    ipv4: family(egress4, dns.v4 !== undefined, domain.v4 !== undefined, http4),
    ipv6: family(egress6, dns.v6 !== undefined, domain.v6 !== undefined, http6),
  };
}
