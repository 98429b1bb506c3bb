// Certificate names. SNI names come from the network and end up in file paths and in
// certificate orders, so they are checked strictly here, once, before anything else
// sees them, by the node's one host-name rule (common/hostname.ts: the hosts that
// route are the hosts that get certificates).

import { isHostName } from '../common/index.js';

export { isHostName };

/** True for '*.example.org': one wildcard label over a valid host name. */
export function isWildcardName(name: string): boolean {
  return name.startsWith('*.') && isHostName(name.slice(2));
}

/** A name a certificate can be stored or configured for: a host name or a wildcard. */
export function isCertName(name: string): boolean {
  return isHostName(name) || isWildcardName(name);
}

/**
 * Normalizes an SNI server name: lowercase, one trailing dot removed. Returns undefined
 * for anything that is not a plain host name (IP literals, empty labels, '..', '/', NUL,
 * overlong labels or names, wildcards).
 */
export function normalizeServerName(raw: unknown): string | undefined {
  if (typeof raw !== 'string') return undefined;
  let name = raw.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  return isHostName(name) ? name : undefined;
}

/** The wildcard name that would cover a host ('a.example.org' -> '*.example.org'); one label only. */
export function wildcardFor(host: string): string | undefined {
  const dot = host.indexOf('.');
  if (dot < 0) return undefined;
  const parent = host.slice(dot + 1);
  return parent.includes('.') ? `*.${parent}` : undefined;
}
