// Who may operate a program: its owner (the message's sender) or an address the owner
// delegated in their `security` aggregate on the Aleph API (the reference's
// check_owner_permissions: an authorization with no `types`, or with INSTANCE in them).

import { fetch } from 'undici'; // the project's undici, never Node's bundled one (see programs/aleph/client.ts)
import { createLogger } from '../common/index.js';

const log = createLogger('control');

const CACHE_MS = 60_000;
const FETCH_TIMEOUT_MS = 5_000;
const MAX_AGGREGATE_BYTES = 256 * 1024;
const MAX_CACHED = 1024;

export class Owners {
  private readonly cache = new Map<string, { at: number; delegates: Set<string> }>();

  constructor(private readonly apiUrl: () => string) {}

  async authorized(sender: string, owner: string): Promise<boolean> {
    if (owner === '') return false;
    if (sender.toLowerCase() === owner.toLowerCase()) return true;
    const delegates = await this.delegates(owner);
    return delegates.has(sender.toLowerCase());
  }

  private async delegates(owner: string): Promise<Set<string>> {
    const key = owner.toLowerCase();
    const cached = this.cache.get(key);
    if (cached && Date.now() - cached.at < CACHE_MS) return cached.delegates;
    const url = `${this.apiUrl().replace(/\/+$/, '')}/api/v0/aggregates/${encodeURIComponent(owner)}.json?keys=security`;
    let delegates: Set<string>;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      if (res.status === 404) {
        await res.body?.cancel();
        delegates = new Set();
      } else {
        if (!res.ok) throw new Error(`status ${res.status}`);
        const length = Number(res.headers.get('content-length') ?? 0);
        if (length > MAX_AGGREGATE_BYTES) throw new Error('aggregate too large');
        const text = await res.text();
        if (text.length > MAX_AGGREGATE_BYTES) throw new Error('aggregate too large');
        delegates = parseDelegates(JSON.parse(text));
      }
    } catch (error) {
      // As the reference: an aggregate that cannot be read delegates nothing (not cached).
      log.warn('could not read the security aggregate', { owner, error: (error as Error).message });
      return new Set();
    }
    if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { at: Date.now(), delegates });
    return delegates;
  }
}

function parseDelegates(body: unknown): Set<string> {
  const out = new Set<string>();
  const data = (body as { data?: { security?: { authorizations?: unknown } } } | null)?.data;
  const authorizations = data?.security?.authorizations;
  if (!Array.isArray(authorizations)) return out;
  for (const entry of authorizations) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { address, types } = entry as { address?: unknown; types?: unknown };
    if (typeof address !== 'string') continue;
    if (Array.isArray(types) && types.length > 0 && !types.includes('INSTANCE')) continue;
    out.add(address.toLowerCase());
  }
  return out;
}
