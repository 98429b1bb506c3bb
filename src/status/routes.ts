// The status API's resources, one per endpoint. Pure request -> reply mapping over
// a StatusProvider; transport concerns (sockets, bodies, 500s) live in server.ts.

import { BootFailedError, EdgeError, NotFoundError, UnavailableError, normalizeHash } from '../common/index.js';
import type { InstanceAction, StatusProvider } from './types.js';
import { certToWire, type DrainResult, type ErrorBody, type InstanceResult, type StopResult } from './wire.js';

export const JSON_TYPE = 'application/json';
export const METRICS_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Reply =
  | { status: number; json: unknown; headers?: Record<string, string> }
  | { status: number; text: string; contentType: string };

type Method = 'GET' | 'POST';
type Handler = (provider: StatusProvider, params: string[]) => Promise<Reply>;

interface Route {
  pattern: RegExp;
  methods: Partial<Record<Method, Handler>>;
}

const ok = (json: unknown, status = 200): Reply => ({ status, json });

export function errorReply(status: number, message: string, headers?: Record<string, string>): Reply {
  const body: ErrorBody = { error: message };
  return headers ? { status, json: body, headers } : { status, json: body };
}

const ROUTES: Route[] = [
  { pattern: /^\/status$/, methods: { GET: async (p) => ok(await p.status()) } },
  { pattern: /^\/vms$/, methods: { GET: async (p) => ok(await p.vms()) } },
  { pattern: /^\/certs$/, methods: { GET: async (p) => ok((await p.certs()).map(certToWire)) } },
  {
    pattern: /^\/metrics$/,
    methods: { GET: async (p) => ({ status: 200, text: await p.metrics(), contentType: METRICS_TYPE }) },
  },
  { pattern: /^\/vms\/([^/]*)\/stop$/, methods: { POST: stopVm } },
  { pattern: /^\/instances\/([^/]*)\/(start|stop|erase)$/, methods: { POST: instanceAction } },
  {
    pattern: /^\/login$/,
    methods: {
      GET: async (p) => (p.login ? ok(await p.login()) : errorReply(404, 'this node has no login')),
    },
  },
  {
    pattern: /^\/reload$/,
    methods: {
      POST: async (p) => {
        const result = await p.reload();
        // 422: the request was fine but the new configuration was not; body says why.
        return ok(result, result.ok ? 200 : 422);
      },
    },
  },
  {
    pattern: /^\/drain$/,
    methods: {
      POST: async (p) => {
        await p.drain();
        const body: DrainResult = { draining: true };
        return ok(body, 202); // accepted: the process finishes in-flight work and exits later
      },
    },
  },
];

async function stopVm(provider: StatusProvider, [raw = '']: string[]): Promise<Reply> {
  const hash = normalizeHash(decodeSegment(raw));
  if (!hash) return errorReply(400, 'malformed program hash (expected 64 hex characters)');
  if (!(await provider.stopVm(hash))) return errorReply(404, `no running execution for ${hash}`);
  const body: StopResult = { stopped: hash };
  return ok(body);
}

async function instanceAction(provider: StatusProvider, [raw = '', action = '']: string[]): Promise<Reply> {
  const hash = normalizeHash(decodeSegment(raw));
  if (!hash) return errorReply(400, 'malformed instance hash (expected 64 hex characters)');
  if (!provider.instance) return errorReply(404, 'this node does not run instances');
  let changed: boolean;
  try {
    changed = await provider.instance(action as InstanceAction, hash);
  } catch (error) {
    // The node's own refusals say why (messages are public); anything else is a 500.
    if (error instanceof NotFoundError) return errorReply(404, error.message);
    if (error instanceof BootFailedError) return errorReply(502, error.message);
    if (error instanceof UnavailableError) return errorReply(503, error.message);
    if (error instanceof EdgeError) return errorReply(400, error.message);
    throw error;
  }
  const body: InstanceResult = { hash, action: action as InstanceAction, changed };
  return ok(body);
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // undecodable: normalizeHash rejects it anyway
  }
}

/** Dispatches one request; provider exceptions propagate to the caller. */
export async function dispatch(method: string, pathname: string, provider: StatusProvider): Promise<Reply> {
  for (const route of ROUTES) {
    const match = route.pattern.exec(pathname);
    if (!match) continue;
    const handler = route.methods[method as Method];
    if (!handler) {
      const allow = Object.keys(route.methods).join(', ');
      return errorReply(405, `method ${method} not allowed on ${pathname}`, { Allow: allow });
    }
    return handler(provider, match.slice(1));
  }
  return errorReply(404, `no such resource: ${pathname}`);
}
