import {
  BadRequestError, BootFailedError, NotFoundError, UnavailableError, UpstreamError, UpstreamTimeoutError,
} from '../common/index.js';
import type { WireError } from './protocol.js';

/** Typed errors cross the IPC channel as data and are rebuilt on the other side. */
export function toWire(error: unknown): WireError {
  if (error instanceof NotFoundError) return { kind: 'not_found', message: error.message };
  if (error instanceof BadRequestError) return { kind: 'bad_request', message: error.message };
  if (error instanceof UnavailableError) return { kind: 'unavailable', message: error.message, retryAfterS: error.retryAfterS, reason: error.reason };
  if (error instanceof BootFailedError) return { kind: 'boot_failed', message: error.message, retryAfterS: error.retryAfterS };
  if (error instanceof UpstreamError) return { kind: 'upstream', message: error.message };
  if (error instanceof UpstreamTimeoutError) return { kind: 'timeout', message: error.message };
  return { kind: 'internal', message: error instanceof Error ? error.message : String(error) };
}

export function fromWire(wire: WireError): Error {
  switch (wire.kind) {
    case 'not_found': return new NotFoundError(wire.message);
    case 'bad_request': return new BadRequestError(wire.message);
    case 'unavailable': return new UnavailableError(wire.message, wire.retryAfterS ?? 1, wire.reason ?? 'capacity');
    case 'boot_failed': return new BootFailedError(wire.message, { retryAfterS: wire.retryAfterS });
    case 'upstream': return new UpstreamError(wire.message);
    case 'timeout': return new UpstreamTimeoutError(wire.message);
    default: return new Error(wire.message);
  }
}

