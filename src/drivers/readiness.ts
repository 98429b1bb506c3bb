// Readiness probing: "ready" means the program answers HTTP, not that its process or
// VM exists. The orchestrator calls this after Driver.start(); drivers don't.

import { request, type IncomingMessage } from 'node:http';
import { formatEndpoint, type Endpoint } from './types.js';

export interface WaitForHttpOptions {
  /** '' = any HTTP response means ready (probes '/'); otherwise a 2xx/3xx on this path. */
  path: string;
  /** Absolute time limit, in ms since the epoch (compare Date.now()). */
  deadline: number;
  /** Aborts the wait (e.g. the program exited, or the node is draining). */
  signal?: AbortSignal;
}

export interface ReadinessResult {
  status: number;
  attempts: number;
}

/** The program did not answer in time; `lastError` says what the last probe saw. */
export class ReadinessTimeoutError extends Error {
  override readonly name = 'ReadinessTimeoutError';
  constructor(
    message: string,
    readonly lastError: string,
  ) {
    super(message);
  }
}

// A short cap: time between the program listening and our next probe is pure boot overhead.
const FIRST_BACKOFF_MS = 5;
const MAX_BACKOFF_MS = 25;
/** Cap per probe so one hung connection doesn't eat the whole boot budget. */
const MAX_PROBE_MS = 2000;

/** Polls the endpoint with backoff (5 ms doubling to 25 ms) until it is ready. */
export async function waitForHttp(endpoint: Endpoint, options: WaitForHttpOptions): Promise<ReadinessResult> {
  const { path, deadline, signal } = options;
  const accept = path === '' ? () => true : (status: number) => status >= 200 && status < 400;
  let backoff = FIRST_BACKOFF_MS;
  let attempts = 0;
  let lastError = 'no attempt made';

  for (;;) {
    signal?.throwIfAborted();
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new ReadinessTimeoutError(`${formatEndpoint(endpoint)} did not answer HTTP before the deadline (${lastError})`, lastError);
    }
    attempts++;
    const probeMs = Math.min(remaining, MAX_PROBE_MS);
    try {
      const status = await probe(endpoint, path === '' ? '/' : path, probeMs, signal);
      if (accept(status)) return { status, attempts };
      lastError = `HTTP ${status}`;
    } catch (err) {
      signal?.throwIfAborted();
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      // A probe cut short by the deadline says less than what the previous one saw
      // (on a loaded machine even a refused connect can outlast a few ms).
      const cutShort = code === 'ETIMEDOUT' && probeMs < MAX_PROBE_MS && attempts > 1;
      if (!cutShort) lastError = code;
    }
    const pause = Math.min(backoff, deadline - Date.now());
    if (pause > 0) await abortableDelay(pause, signal);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }
}

/** One GET; resolves with the status code (the body is discarded). */
function probe(endpoint: Endpoint, path: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const target =
      endpoint.kind === 'tcp' ? { host: endpoint.host, port: endpoint.port } : { socketPath: endpoint.path };
    const req = request({
      ...target,
      path,
      method: 'GET',
      headers: { 'user-agent': 'aleph-edge-readiness', connection: 'close' },
      agent: false,
      timeout: timeoutMs,
      signal,
    });
    req.once('response', (res: IncomingMessage) => {
      res.resume();
      resolve(res.statusCode ?? 0);
      res.on('error', () => undefined);
    });
    req.once('timeout', () => req.destroy(Object.assign(new Error('probe timed out'), { code: 'ETIMEDOUT' })));
    req.once('error', reject);
    req.end();
  });
}

function abortableDelay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
