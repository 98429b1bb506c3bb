// Request-target validation and the bare domain's own paths (`/vm/<hash>/...`,
// node pages). Char-code scans only: this runs on every request.

import { BadRequestError, normalizeHash, NotFoundError, parseHost } from '../common/index.js';
import type { Route } from './types.js';

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const PERCENT = 0x25;
const QUESTION = 0x3f;
const HASH_SIGN = 0x23;
const SEMICOLON = 0x3b;
const DEL = 0x7f;

const HASH_LENGTH = 64;
const VM_PREFIX = '/vm';
const ABOUT_PREFIX = '/about';
const STATUS_PREFIX = '/status';
const V2_PREFIX = '/v2';
const CONTROL_PREFIX = '/control';

function invalidTarget(detail = 'invalid request target'): BadRequestError {
  return new BadRequestError(detail);
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * Rejects control characters anywhere, and in the path part (before `?`):
 * backslashes and any `..` segment, also when spelled with `%2e`, or separated
 * by `%2f` / `%5c` (which a backend may decode into a separator). `;` and `#`
 * also end a dot run, so `..;/x` and `..#` (read as `..` by some servers) fail too.
 * Backslashes stay allowed in the query, where browsers send them unencoded.
 */
export function checkTarget(target: string): void {
  const length = target.length;
  let inPath = true;
  let dots = 0; // dots (literal or %2e) in the current segment
  let other = false; // the current segment holds something besides dots
  for (let i = 0; i < length; i++) {
    const c = target.charCodeAt(i);
    if (c < 0x20 || c === DEL) throw invalidTarget();
    if (!inPath) continue;

    let boundary = c === SLASH || c === QUESTION || c === SEMICOLON || c === HASH_SIGN;
    let dot = c === DOT;
    if (c === BACKSLASH) throw invalidTarget();
    if (c === PERCENT && i + 2 < length) {
      const value = (hexValue(target.charCodeAt(i + 1)) << 4) | hexValue(target.charCodeAt(i + 2));
      if (value === DOT) dot = true;
      else if (value === SLASH || value === BACKSLASH) boundary = true;
      if (dot || boundary) i += 2;
    }

    if (boundary) {
      if (dots === 2 && !other) throw invalidTarget('invalid request target: dot-segment');
      dots = 0;
      other = false;
      if (c === QUESTION) inPath = false;
    } else if (dot) dots++;
    else other = true;
  }
  if (inPath && dots === 2 && !other) throw invalidTarget('invalid request target: dot-segment');
}

/**
 * Returns the origin-form (`/path?query`) of a request target. Absolute-form
 * (`http://host/path`, what proxies send) is accepted when its authority names
 * the same host as the Host header: RFC 9112 says the target's authority wins,
 * and requiring agreement keeps one answer to "which host is this". A mismatch,
 * asterisk-form and authority-form are 400.
 */
export function originForm(target: string, host: string): string {
  if (target.charCodeAt(0) === SLASH) return target;
  const schemeEnd = target.indexOf('://');
  const scheme = schemeEnd < 0 ? '' : target.slice(0, schemeEnd).toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') throw invalidTarget();

  const authorityStart = schemeEnd + 3;
  let authorityEnd = authorityStart;
  while (authorityEnd < target.length) {
    const c = target.charCodeAt(authorityEnd);
    if (c === SLASH || c === QUESTION || c === HASH_SIGN) break;
    authorityEnd++;
  }
  let targetHost: string;
  try {
    targetHost = parseHost(target.slice(authorityStart, authorityEnd));
  } catch {
    throw invalidTarget(); // userinfo, bad chars: say "target", not "Host header"
  }
  if (targetHost !== host) throw invalidTarget('request target does not match Host header');

  const rest = target.slice(authorityEnd);
  if (rest.length === 0) return '/';
  return rest.charCodeAt(0) === SLASH ? rest : '/' + rest;
}

/** True when the path part `target[0..pathEnd)` is `prefix` or starts with `prefix/`. */
function isUnder(target: string, pathEnd: number, prefix: string): boolean {
  return (
    target.startsWith(prefix) &&
    (pathEnd === prefix.length || target.charCodeAt(prefix.length) === SLASH)
  );
}

/** `/vm/<hash><rest>` -> the program at `/<rest>` (query kept). */
function vmRoute(target: string, pathEnd: number): Route {
  const hashStart = VM_PREFIX.length + 1;
  let hashEnd = target.indexOf('/', hashStart);
  if (hashEnd < 0 || hashEnd > pathEnd) hashEnd = pathEnd;
  // `/vm`, `/vm/`, `/vm//x`: no hash was given at all, which is not a malformed one.
  if (hashEnd <= hashStart) throw new NotFoundError('no program hash given');
  const hash = hashEnd - hashStart === HASH_LENGTH ? normalizeHash(target.slice(hashStart, hashEnd)) : undefined;
  if (hash === undefined) throw new BadRequestError('malformed program hash');

  let path = target.slice(hashEnd);
  if (path.length === 0) path = '/';
  else if (path.charCodeAt(0) !== SLASH) path = '/' + path; // `/vm/<hash>?q` -> `/?q`
  return { kind: 'program', hash, path, via: 'path' };
}

/**
 * Where a program routed by path is mounted on the node (`/vm/<hash>`): it is sent as
 * X-Forwarded-Prefix (root_path for ASGI apps) so the program's links stay under it.
 */
export function mountPrefix(route: Route): string | undefined {
  return route.kind === 'program' && route.via === 'path' ? `${VM_PREFIX}/${route.hash}` : undefined;
}

/** Rule 1: what the bare domain serves for a validated origin-form target. */
export function routeDomainPath(target: string): Route {
  const query = target.indexOf('?');
  const pathEnd = query < 0 ? target.length : query;
  if (pathEnd === 1) return { kind: 'node', page: 'index', path: target };
  if (isUnder(target, pathEnd, VM_PREFIX)) return vmRoute(target, pathEnd);
  if (isUnder(target, pathEnd, ABOUT_PREFIX)) return { kind: 'node', page: 'about', path: target };
  if (isUnder(target, pathEnd, STATUS_PREFIX)) return { kind: 'node', page: 'status', path: target };
  if (isUnder(target, pathEnd, V2_PREFIX)) return { kind: 'node', page: 'v2', path: target };
  if (isUnder(target, pathEnd, CONTROL_PREFIX)) return { kind: 'node', page: 'control', path: target };
  throw new NotFoundError('no such page');
}
