// Who may push allocations: the scheduler, as the reference's allocation_auth.py checks
// it. `Authorization: Aleph-EIP191-V1 sig=<hex>,payload=<hex>`, where payload is JSON
// binding method, path, body_sha256 and iat (seconds) and sig is an Ethereum
// personal_sign of the payload bytes by an authorized signer; an identical payload is
// accepted once. Or the deprecated `X-Auth-Signature` token whose sha256 is configured.

import { createHash, timingSafeEqual } from 'node:crypto';
import { DEFAULT_ALLOCATION_SIGNERS, type ControlSettings } from '../config/index.js';
import { createLogger } from '../common/index.js';
import { ControlError } from './errors.js';
import type { ControlRequest } from './types.js';
import { fromHex, recoverEthereumSigner } from './wallet.js';

const SCHEME = 'aleph-eip191-v1';
/** The reference's answer to every refusal (it does not tell which check failed; the log does). */
export const ALLOCATION_AUTH_FAILED = 'Authentication token received is invalid';

const log = createLogger('control');

class Refused extends Error {}

export class AllocationAuth {
  /** Per signer: sha256 of each accepted payload -> its iat, pruned once outside the window. */
  private readonly accepted = new Map<string, Map<string, number>>();

  constructor(private readonly settings: () => ControlSettings, private readonly now: () => number = Date.now) {}

  /** Returns who signed (an address, or 'token'); throws ControlError('unauthenticated') otherwise. */
  verify(request: ControlRequest, body: Buffer): string {
    try {
      const authorization = request.headers['authorization'] ?? '';
      // An Authorization header is authoritative: no fallback to the legacy token.
      if (authorization !== '') return this.verifySignature(authorization, request, body);
      const token = request.headers['x-auth-signature'];
      if (token !== undefined) return this.verifyToken(token);
      throw new Refused('no Authorization nor X-Auth-Signature header');
    } catch (error) {
      if (!(error instanceof Refused)) throw error;
      log.warn('allocation request refused', { reason: error.message });
      throw new ControlError('unauthenticated', ALLOCATION_AUTH_FAILED);
    }
  }

  private verifyToken(token: string): string {
    const expected = this.settings().allocationTokenHash;
    if (expected === '' || token === '') throw new Refused('X-Auth-Signature is not accepted here');
    const got = createHash('sha256').update(token).digest();
    if (!timingSafeEqual(got, Buffer.from(expected, 'hex'))) throw new Refused('X-Auth-Signature does not match allocation_token_hash');
    return 'token';
  }

  private verifySignature(header: string, request: ControlRequest, body: Buffer): string {
    const params = parseParams(header);
    const payloadBytes = fromHex(params.payload);
    if (!payloadBytes) throw new Refused('payload is not hex');
    const payload = parseJson(payloadBytes);
    for (const field of ['method', 'path', 'body_sha256', 'iat']) if (!(field in payload)) throw new Refused(`payload has no ${field}`);
    const iat = payload.iat;
    if (typeof iat !== 'number' || !Number.isSafeInteger(iat)) throw new Refused('iat must be an integer');
    const maxAgeS = this.settings().allocationSignatureMaxAgeMs / 1000;
    const nowS = this.now() / 1000;
    if (Math.abs(iat - nowS) > maxAgeS) throw new Refused(`iat ${iat} is more than ${maxAgeS} s from now`);
    if (payload.method !== request.method || payload.path !== request.path) throw new Refused('payload method or path differs from the request');
    // The payload does not bind a query string, so none is accepted.
    if (request.query !== '') throw new Refused('signed requests take no query string');
    const signature = fromHex(params.sig);
    if (!signature) throw new Refused('sig is not hex');
    const signer = recoverEthereumSigner(payloadBytes, signature);
    if (!signer) throw new Refused('sig does not recover a key');
    if (!this.signers().includes(signer)) throw new Refused(`signer ${signer} is not authorized`);
    if (createHash('sha256').update(body).digest('hex') !== payload.body_sha256) throw new Refused('body_sha256 does not match the body');
    if (!this.acceptOnce(signer, createHash('sha256').update(payloadBytes).digest('hex'), iat, nowS - maxAgeS)) throw new Refused('payload already accepted (replay)');
    return signer;
  }

  private signers(): string[] {
    const configured = this.settings().authorizedAllocationSigners;
    return configured.length > 0 ? configured : DEFAULT_ALLOCATION_SIGNERS;
  }

  private acceptOnce(signer: string, payloadHash: string, iat: number, cutoffS: number): boolean {
    let seen = this.accepted.get(signer);
    if (!seen) this.accepted.set(signer, (seen = new Map()));
    for (const [hash, at] of seen) if (at < cutoffS) seen.delete(hash);
    if (seen.has(payloadHash)) return false;
    seen.set(payloadHash, iat);
    return true;
  }
}

function parseParams(header: string): { sig: string; payload: string } {
  const space = header.indexOf(' ');
  const scheme = space < 0 ? header : header.slice(0, space);
  if (scheme.toLowerCase() !== SCHEME) throw new Refused(`unsupported scheme ${JSON.stringify(scheme.slice(0, 32))}`);
  const rest = space < 0 ? '' : header.slice(space + 1).trim();
  if (rest === '') throw new Refused('no auth parameters');
  const params = new Map<string, string>();
  for (const pair of rest.split(',')) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? '' : pair.slice(0, eq).trim();
    const value = eq < 0 ? '' : pair.slice(eq + 1);
    if (key === '' || value === '') throw new Refused('malformed auth parameter');
    params.set(key, value);
  }
  // Every parameter is bound by the check: unknown ones are refused, not ignored.
  if ([...params.keys()].some((k) => k !== 'sig' && k !== 'payload')) throw new Refused('unknown auth parameter');
  const sig = params.get('sig');
  const payload = params.get('payload');
  if (sig === undefined || payload === undefined) throw new Refused('sig and payload are required');
  return { sig, payload };
}

function parseJson(bytes: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new Refused('payload is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Refused('payload is not a JSON object');
  return value as Record<string, unknown>;
}
