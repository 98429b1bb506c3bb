import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

// Hop-by-hop headers (RFC 9110 7.6.1) apply to one connection and are never forwarded.
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

// Forwarding headers a client could forge; we set our own and drop theirs. Every
// X-Forwarded-* counts (-Server, -Prefix, -Ssl... are trusted by some frameworks),
// so do the client-IP headers CDNs set and libraries read like X-Forwarded-For,
// and '_' is read as '-' (CGI/WSGI servers map both to HTTP_X_FORWARDED_FOR).
const CLIENT_FORWARDING = new Set([
  'forwarded', 'x-real-ip', 'true-client-ip', 'cf-connecting-ip', 'x-client-ip', 'client-ip', 'x-cluster-client-ip',
]);

function isClientForwarding(name: string): boolean {
  const normalized = name.includes('_') ? name.replaceAll('_', '-') : name;
  return normalized.startsWith('x-forwarded-') || CLIENT_FORWARDING.has(normalized);
}

/** Facts about the client connection, established by edge/, never by the client. */
export interface ClientFacts {
  clientIp: string;
  proto: 'https' | 'http';
  host: string; // Host as received (validated by routing)
  /** Where the program is mounted when routed by path (`/vm/<hash>`): X-Forwarded-Prefix. */
  prefix?: string | undefined;
}

/** One exchange to forward: the client's facts and the target routing chose. */
export interface ForwardInfo extends ClientFacts {
  /** The target the program is asked for (`/a%2Fb?x=1` of `/vm/<hash>/a%2Fb?x=1`), sent exactly as it is. */
  path: string;
}

function connectionTokens(value: string | string[] | undefined): string[] {
  if (!value) return [];
  const text = Array.isArray(value) ? value.join(',') : value;
  return text.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
}

/** Whether a request header goes on to the program (`nominated`: the Connection tokens). */
function forwardsUpstream(name: string, nominated: string[]): boolean {
  return !(HOP_BY_HOP.has(name) || isClientForwarding(name) || name === 'expect' || nominated.includes(name));
}

/**
 * Headers sent to the program: hop-by-hop and client forwarding headers removed,
 * our X-Forwarded-* set. For a WebSocket upgrade, Connection/Upgrade are kept.
 */
export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, info: ClientFacts, upgrade: boolean): IncomingHttpHeaders {
  const nominated = connectionTokens(incoming.connection);
  const out: IncomingHttpHeaders = {};
  for (const name in incoming) if (forwardsUpstream(name, nominated)) out[name] = incoming[name];
  // The body was de-chunked by our parser; re-frame it the same way upstream so a
  // body without Content-Length is never sent unframed (request smuggling).
  if (incoming['transfer-encoding'] !== undefined) {
    out['transfer-encoding'] = 'chunked';
    delete out['content-length'];
  }
  if (upgrade) {
    out.connection = 'Upgrade';
    out.upgrade = incoming.upgrade;
  }
  out['x-forwarded-for'] = info.clientIp;
  out['x-forwarded-proto'] = info.proto;
  out['x-forwarded-host'] = info.host;
  if (info.prefix) out['x-forwarded-prefix'] = info.prefix;
  return out;
}

/**
 * The HTTP path's form: raw header pairs ([name, value, ...] as received), which the
 * HTTP client writes as they are; repeated headers keep their order and casing. A
 * de-chunked body loses any Content-Length, and the client frames it chunked again.
 */
export function upstreamRequestRawHeaders(incoming: { rawHeaders: string[]; headers: IncomingHttpHeaders }, info: ClientFacts): string[] {
  const nominated = connectionTokens(incoming.headers.connection);
  const chunked = incoming.headers['transfer-encoding'] !== undefined;
  const raw = incoming.rawHeaders;
  const out: string[] = [];
  let host = false;
  let cookieAt = -1; // index of the value of the first cookie field in `out`
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    // HTTP/2 pseudo-headers (:method, :path, :authority, :scheme) are not headers upstream.
    if (name.charCodeAt(0) === 58 || !forwardsUpstream(name, nominated) || (chunked && name === 'content-length')) continue;
    if (name === 'host') host = true;
    if (name === 'cookie') {
      // HTTP/2 clients send one field per cookie; HTTP/1.1 wants them in one line,
      // joined with "; " (RFC 9113 8.2.3), or an app reads only the first.
      if (cookieAt >= 0) {
        out[cookieAt] += `; ${raw[i + 1]!}`;
        continue;
      }
      cookieAt = out.length + 1;
    }
    out.push(raw[i]!, raw[i + 1]!);
  }
  // From HTTP/2, the authority becomes the Host header of the HTTP/1.1 request.
  if (!host && info.host) out.push('host', info.host);
  out.push('x-forwarded-for', info.clientIp, 'x-forwarded-proto', info.proto, 'x-forwarded-host', info.host);
  if (info.prefix) out.push('x-forwarded-prefix', info.prefix);
  return out;
}

/** Headers sent back to the client: hop-by-hop removed, program identity added. */
export function downstreamResponseHeaders(incoming: IncomingHttpHeaders, hash: string, codeRef?: string): OutgoingHttpHeaders {
  const nominated = connectionTokens(incoming.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    if (HOP_BY_HOP.has(name) || nominated.includes(name)) continue;
    out[name] = incoming[name];
  }
  out['aleph-program-itemhash'] = hash;
  if (codeRef) out['aleph-program-code-ref'] = codeRef;
  return out;
}
