// Host names, one rule for the whole node: the edge (Host, :authority, SNI), routing
// and TLS (certificate names, storage paths) all read them here, so a host that
// routes is a host that can get a certificate. Parsing runs on every request: a
// single pass over char codes with no regular expressions, returning the input
// string itself when it is already canonical (the common case: no port, lowercase).
//
// The rule: letters, digits and hyphens (LDH, RFC 1123), labels 1-63 characters
// without a leading or trailing hyphen, 253 at most, lowercase, no trailing dot; a
// last label of digits only is an IPv4 address or nothing. No `_`: public CAs may not
// put it in a certificate (CA/Browser Forum ballot SC-12), and a leading `_` names DNS
// metadata such as `_aleph-id.<host>`.

import { isIPv4, isIPv6 } from 'node:net';
import { BadRequestError } from './errors.js';

const MAX_NAME_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;
const MAX_PORT = 65535;

const DOT = 0x2e;
const COLON = 0x3a;
const HYPHEN = 0x2d;
const OPEN_BRACKET = 0x5b;

function invalidHost(): BadRequestError {
  return new BadRequestError('invalid Host header');
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** `from..end` is an optional port (RFC 3986 allows an empty one): digits only, <= 65535. */
function checkPort(raw: string, from: number): void {
  const digits = raw.length - from;
  if (digits > 5) throw invalidHost();
  let value = 0;
  for (let i = from; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (!isDigit(c)) throw invalidHost();
    value = value * 10 + (c - 0x30);
  }
  if (value > MAX_PORT) throw invalidHost();
}

/** `[v6]` or `[v6]:port`; returns the address without brackets, lowercase. */
function parseBracketed(raw: string): string {
  const close = raw.indexOf(']');
  if (close < 0) throw invalidHost();
  if (close + 1 < raw.length) {
    if (raw.charCodeAt(close + 1) !== COLON) throw invalidHost();
    checkPort(raw, close + 2);
  }
  const address = raw.slice(1, close);
  // Zone ids (`fe80::1%eth0`) pass isIPv6 but have no meaning in a Host header.
  if (address.includes('%') || !isIPv6(address)) throw invalidHost();
  return address.toLowerCase();
}

/**
 * Validates `raw[0..end)` as a DNS name (or an IPv4 literal) and returns it lowercased
 * without one trailing dot, by the rule at the top of this file.
 */
function parseName(raw: string, end: number): string {
  if (end > 0 && raw.charCodeAt(end - 1) === DOT) end--;
  if (end === 0 || end > MAX_NAME_LENGTH) throw invalidHost();

  let hasUpper = false;
  let labelStart = 0;
  let labelNumeric = true;
  for (let i = 0; i <= end; i++) {
    const c = i === end ? DOT : raw.charCodeAt(i);
    if (c === DOT) {
      const length = i - labelStart;
      if (length === 0 || length > MAX_LABEL_LENGTH) throw invalidHost();
      if (raw.charCodeAt(i - 1) === HYPHEN) throw invalidHost();
      // A numeric last label: an IPv4 address in some spelling (1.2.3.4, 10.1), never a TLD.
      if (i === end && labelNumeric && !isIPv4(raw.slice(0, end))) throw invalidHost();
      labelStart = i + 1;
      labelNumeric = true;
      continue;
    }
    if (isDigit(c)) continue;
    labelNumeric = false;
    if (c >= 0x61 && c <= 0x7a) continue; // a-z
    if (c >= 0x41 && c <= 0x5a) {
      hasUpper = true; // A-Z
      continue;
    }
    if (c === HYPHEN) {
      if (i === labelStart) throw invalidHost();
      continue;
    }
    // Everything else: '_', '/', '\\', '@', '%', spaces, controls, non-ASCII, stray ':' ...
    throw invalidHost();
  }

  if (end === raw.length && !hasUpper) return raw;
  const name = raw.slice(0, end);
  return hasUpper ? name.toLowerCase() : name;
}

/**
 * Parses a Host header (or :authority): strips the port, lowercases, strips one
 * trailing dot. IPv6 literals come back without brackets. Throws
 * BadRequestError('invalid Host header') for anything that is not a plausible host.
 */
export function parseHost(raw: string): string {
  if (raw.length === 0) throw invalidHost();
  if (raw.charCodeAt(0) === OPEN_BRACKET) return parseBracketed(raw);
  const colon = raw.indexOf(':');
  if (colon < 0) return parseName(raw, raw.length);
  checkPort(raw, colon + 1); // also rejects a second ':' (unbracketed IPv6)
  return parseName(raw, colon);
}

/** True for an IPv4 or IPv6 literal as returned by parseHost (such hosts have no TXT record). */
export function isIpLiteral(host: string): boolean {
  if (host.includes(':')) return true;
  return isDigit(host.charCodeAt(host.length - 1)) && isIPv4(host);
}

/** parseHost, or undefined for anything it refuses (for callers that only compare). */
export function canonicalHost(raw: string): string | undefined {
  try {
    return parseHost(raw);
  } catch {
    return undefined;
  }
}

/** True for a host name in canonical form (lowercase, no port, no trailing dot), not an IP literal. */
export function isHostName(name: string): boolean {
  return canonicalHost(name) === name && !isIpLiteral(name);
}

/** `host:port` as in a URL's authority: an IPv6 literal goes in brackets. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
