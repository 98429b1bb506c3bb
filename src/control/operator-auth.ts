// The owner's authentication, as the reference's doc/operator_auth.md and
// authentication.py define it. X-SignedPubKey: an ephemeral P-256 JWK, its expiry and
// the owner's address, signed by the owner's wallet (Ethereum personal_sign of the
// payload bytes, or Solana ed25519 of the payload's hex text). X-SignedOperation: time,
// method, path and domain, signed (ES256, raw r||s) by that ephemeral key.
// Both are hex-encoded JSON. Stale operations are 401 here (the reference answers 400).

import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { ControlError } from './errors.js';
import { fromHex, recoverEthereumSigner, verifySolana } from './wallet.js';

/** How far an operation's time may be from now, either way. */
export const OPERATION_WINDOW_MS = 2 * 60 * 1000;

export interface OperationTarget {
  domain: string;
  /** HTTP: the request's method and path must be the signed ones; WebSocket: only the domain is. */
  method?: string;
  path?: string;
}

interface SignedPart {
  payload: Uint8Array;
  signature: Uint8Array;
}

const bad = (message: string) => new ControlError('bad_request', message, 'json');
const denied = (message: string) => new ControlError('unauthenticated', message, 'json');

/** HTTP: the two headers (raw JSON text). Returns the authenticated address. */
export function authenticateHeaders(signedPubKey: string | undefined, signedOperation: string | undefined, target: Required<OperationTarget>, now = Date.now()): string {
  if (!signedPubKey) throw bad('Missing X-SignedPubKey header');
  const pubkey = signedPart(parseJson(signedPubKey, 'Invalid X-SignedPubKey format'), 'Invalid X-SignedPubKey data');
  const key = checkPubKey(pubkey, now);
  if (!signedOperation) throw bad('Missing X-SignedOperation header');
  const operation = signedPart(parseJson(signedOperation, 'Invalid X-SignedOperation format'), 'Invalid X-SignedOperation fields');
  return checkOperation(operation, key, target, now);
}

/** WebSocket: the first message's `auth` object. Returns the authenticated address. */
export function authenticateMessage(auth: unknown, domain: string, now = Date.now()): string {
  if (!isObject(auth)) throw bad('Invalid format for auth packet, see /doc/operator_auth.md');
  const key = checkPubKey(signedPart(auth['X-SignedPubKey'], 'Invalid X-SignedPubKey data'), now);
  const operation = signedPart(auth['X-SignedOperation'], 'Invalid X-SignedOperation fields');
  return checkOperation(operation, key, { domain }, now);
}

interface EphemeralKey {
  key: KeyObject;
  address: string;
}

function checkPubKey(part: SignedPart, now: number): EphemeralKey {
  const content = parseJson(Buffer.from(part.payload).toString('utf8'), 'Invalid X-SignedPubKey data');
  const { pubkey, address, expires } = content;
  const chain = content.chain ?? 'ETH';
  if (!isObject(pubkey) || typeof address !== 'string' || typeof expires !== 'string' || (chain !== 'ETH' && chain !== 'SOL')) {
    throw bad('Invalid X-SignedPubKey data');
  }
  const expiry = parseTime(expires);
  if (expiry === undefined) throw bad('Invalid X-SignedPubKey data');
  if (expiry <= now) throw denied('Token expired');
  const valid = chain === 'ETH'
    ? recoverEthereumSigner(part.payload, part.signature) === address.toLowerCase()
    // Solana wallets sign the payload's hex text, as the reference checks it.
    : verifySolana(address, Buffer.from(Buffer.from(part.payload).toString('hex')), part.signature);
  if (!valid) throw denied('Invalid signature');
  if (pubkey.kty !== 'EC' || pubkey.crv !== 'P-256' || typeof pubkey.x !== 'string' || typeof pubkey.y !== 'string') throw bad('Invalid X-SignedPubKey data');
  try {
    return { key: createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: pubkey.x, y: pubkey.y }, format: 'jwk' }), address };
  } catch {
    throw bad('Invalid X-SignedPubKey data');
  }
}

function checkOperation(part: SignedPart, ephemeral: EphemeralKey, target: OperationTarget, now: number): string {
  const content = parseJson(Buffer.from(part.payload).toString('utf8'), 'Invalid X-SignedOperation fields');
  const { time, method, domain, path } = content;
  const at = typeof time === 'string' ? parseTime(time) : typeof time === 'number' && Number.isFinite(time) ? time * 1000 : undefined;
  if (at === undefined || typeof domain !== 'string' || typeof path !== 'string' || (method !== 'GET' && method !== 'POST' && method !== 'DELETE')) {
    throw bad('Invalid X-SignedOperation fields');
  }
  if (at < now - OPERATION_WINDOW_MS) throw denied('Time is too far in the past');
  if (at > now + OPERATION_WINDOW_MS) throw denied('Time is too far in the future');
  if (domain !== target.domain) throw denied(`Invalid domain: Signed: '${clip(domain)}' != Request: '${target.domain}'`);
  if (target.path !== undefined && path !== target.path) throw denied(`Invalid path. Signed: '${clip(path)}' != requested path: '${clip(target.path)}'`);
  if (target.method !== undefined && method !== target.method) throw denied(`Invalid method. Signed: '${method}' != request: '${clip(target.method)}'`);
  if (!verify('sha256', part.payload, { key: ephemeral.key, dsaEncoding: 'ieee-p1363' }, part.signature)) throw denied('Signature could not verified');
  return ephemeral.address;
}

function signedPart(value: unknown, message: string): SignedPart {
  if (!isObject(value) || typeof value.payload !== 'string' || typeof value.signature !== 'string') throw bad(message);
  const payload = fromHex(value.payload);
  const signature = fromHex(value.signature);
  if (!payload || !signature) throw bad(message);
  return { payload, signature };
}

/** ISO 8601 with or without an offset (none = UTC, as the reference reads `Z`-less times). */
function parseTime(text: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/i.test(text)) return undefined;
  const zoned = /(Z|[+-]\d{2}:?\d{2})$/i.test(text) ? text : `${text}Z`;
  // Date.parse takes at most milliseconds: drop further fraction digits.
  const ms = Date.parse(zoned.replace(' ', 'T').replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(ms) ? undefined : ms;
}

function parseJson(text: string, message: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    if (isObject(value)) return value;
  } catch {
    // falls through
  }
  throw bad(message);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
