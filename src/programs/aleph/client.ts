// The few Aleph API calls a node makes (API v0 of the Aleph core channel nodes):
//   GET /api/v0/messages.json?hashes=<hash>                 one message by item hash
//   GET /api/v0/messages.json?refs=<ref>&msgTypes=STORE...  the newest amend of a STORE message
//   GET /api/v0/storage/raw/<item_hash>                     a stored blob (download.ts)
//   GET /api/v0/aggregates/<address>.json?keys=<key>        an owner's settings (port forwarding)
// Network failures, timeouts, 5xx and 429 are transient (worth a retry); other
// statuses and malformed bodies are not.

// Not Node's bundled fetch: its undici (7.x in Node 24) dies of an uncaught assert(!this.paused)
// when a peer closes the socket while a body is paused by backpressure (nodejs/undici#5360).
import { fetch, type Response } from 'undici';

export class FetchError extends Error {
  override readonly name = 'FetchError';
  constructor(message: string, readonly transient: boolean, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function isTransientStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/** Describes a fetch() failure in a few words (no URLs with secrets, no stacks). */
export function describeFetchFailure(error: unknown): string {
  if (error instanceof FetchError) return error.message;
  const e = error as { name?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timed out';
  const code = e?.cause?.code;
  if (code) return code === 'ECONNREFUSED' ? 'connection refused' : code;
  return (error as Error)?.message ?? String(error);
}

export interface AlephClientOptions {
  api: string; // base URL, e.g. https://api2.aleph.im
  timeoutMs: number;
}

export class AlephClient {
  private readonly base: string;

  constructor(private readonly options: AlephClientOptions) {
    this.base = options.api.replace(/\/+$/, '');
  }

  get api(): string {
    return this.base;
  }

  /** URL of a stored blob. */
  rawUrl(itemHash: string): string {
    return `${this.base}/api/v0/storage/raw/${itemHash}`;
  }

  /** WebSocket URL of the message stream, starting now. */
  streamUrl(): string {
    const url = new URL(`${this.base}/api/ws0/messages`);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('startDate', String(Math.floor(Date.now() / 1000)));
    return url.toString();
  }

  /** The message with this item hash, or undefined when the API does not know it. */
  async message(hash: string): Promise<unknown | undefined> {
    const list = await this.messages({ hashes: hash });
    return list.find((m) => (m as { item_hash?: unknown })?.item_hash === hash);
  }

  /** The newest STORE message amending `ref` (by the same sender when given), or undefined. */
  async latestAmend(ref: string, sender?: string): Promise<unknown | undefined> {
    const query: Record<string, string> = { refs: ref, msgTypes: 'STORE', sortOrder: '-1', pagination: '20' };
    if (sender) query.addresses = sender;
    const list = await this.messages(query);
    // Newest first; the API's order is trusted only as far as `time` agrees.
    return list
      .filter((m) => (m as { type?: unknown })?.type === 'STORE')
      .sort((a, b) => Number((b as { time?: number }).time ?? 0) - Number((a as { time?: number }).time ?? 0))[0];
  }

  /** One key of an address's aggregate (e.g. "port-forwarding"); undefined when it has none. */
  async aggregate(address: string, key: string): Promise<unknown | undefined> {
    const url = new URL(`${this.base}/api/v0/aggregates/${encodeURIComponent(address)}.json`);
    url.searchParams.set('keys', key);
    const body = await this.getJson(url, true);
    const data = (body as { data?: unknown } | undefined)?.data;
    if (data === undefined || data === null) return undefined;
    if (typeof data !== 'object' || Array.isArray(data)) throw new FetchError('Aleph API sent a malformed aggregate', false);
    return (data as Record<string, unknown>)[key];
  }

  private async messages(query: Record<string, string>): Promise<unknown[]> {
    const url = new URL(`${this.base}/api/v0/messages.json`);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const body = await this.getJson(url, false);
    const messages = (body as { messages?: unknown })?.messages;
    if (!Array.isArray(messages)) throw new FetchError('Aleph API sent a malformed answer (no messages list)', false);
    return messages;
  }

  /** GET a JSON body; undefined for a 404 when `missingOk`. */
  private async getJson(url: URL, missingOk: boolean): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(url, { signal: AbortSignal.timeout(this.options.timeoutMs), headers: { accept: 'application/json' } });
    } catch (error) {
      throw new FetchError(`Aleph API unreachable (${describeFetchFailure(error)})`, true, { cause: error });
    }
    if (!response.ok) {
      await response.body?.cancel();
      if (missingOk && response.status === 404) return undefined;
      throw new FetchError(`Aleph API answered HTTP ${response.status}`, isTransientStatus(response.status));
    }
    try {
      return await response.json();
    } catch (error) {
      throw new FetchError('Aleph API sent a malformed answer', true, { cause: error });
    }
  }
}
