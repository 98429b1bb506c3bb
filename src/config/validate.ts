// Value checks shared by several keys. Each returns an error message, or the
// parsed value; callers attach the key path.

import { isIP, isIPv6 } from 'node:net';
import type { ListenAddress } from './types.js';

export type Checked<T> = { ok: true; value: T } | { ok: false; message: string };

const ok = <T>(value: T): Checked<T> => ({ ok: true, value });
const fail = <T>(message: string): Checked<T> => ({ ok: false, message });

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** A DNS host name, lowercased. No port, no trailing dot, no wildcard. */
export function checkHostname(input: string): Checked<string> {
  const host = input.toLowerCase();
  if (host === '') return fail('must not be empty');
  if (host.endsWith('.')) return fail(`"${input}" must not end with a dot`);
  if (host.includes(':')) return fail(`"${input}" must be a bare host name without a port`);
  if (host.length > 253) return fail(`"${input}" is longer than 253 characters`);
  for (const label of host.split('.')) {
    if (!LABEL.test(label)) return fail(`"${input}" is not a valid DNS name (label "${label}")`);
  }
  return ok(host);
}

/** A host name, or `*.` followed by one (certificate host patterns). */
export function checkHostPattern(input: string): Checked<string> {
  if (!input.startsWith('*.')) return checkHostname(input);
  const rest = checkHostname(input.slice(2));
  return rest.ok ? ok(`*.${rest.value}`) : rest;
}

function checkPort(text: string, input: string): Checked<number> {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) return fail(`"${input}" needs a port between 1 and 65535`);
  return ok(port);
}

/** "ipv4:port" or "[ipv6]:port". The host is returned without brackets. */
export function checkListenAddress(input: string): Checked<ListenAddress> {
  let host: string;
  let portText: string;
  if (input.startsWith('[')) {
    const match = /^\[([^\]]*)\]:(.*)$/.exec(input);
    if (!match || !isIPv6(match[1]!)) return fail(`"${input}" is not "[ipv6]:port"`);
    host = match[1]!;
    portText = match[2]!;
  } else {
    const colon = input.lastIndexOf(':');
    if (colon < 0) return fail(`"${input}" needs a port, like "0.0.0.0:443"`);
    host = input.slice(0, colon);
    portText = input.slice(colon + 1);
    if (host.includes(':')) return fail(`"${input}": write IPv6 addresses in brackets, like "[::]:443"`);
    if (host === '') return fail(`"${input}" needs a host, like "0.0.0.0" or "[::]"`);
    // IP literals only: a name like "localhost" may resolve to either family.
    if (isIP(host) !== 4) return fail(`"${input}": the host must be an IP address, like "0.0.0.0:443" or "[::]:443"`);
  }
  const port = checkPort(portText, input);
  return port.ok ? ok({ host, port: port.value }) : port;
}

/** A DNS server: "ip", "ip:port" or "[v6]:port" (the forms node:dns accepts). */
export function checkDnsServer(input: string): Checked<string> {
  if (isIP(input) !== 0) return ok(input);
  const listen = checkListenAddress(input);
  if (listen.ok && isIP(listen.value.host) !== 0) return ok(input);
  return fail(`"${input}" is not an IP address with an optional port`);
}

export function checkHttpUrl(input: string): Checked<string> {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return fail(`"${input}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail(`"${input}" must be an http(s) URL`);
  return ok(input);
}
