// The error vocabulary the client can see. Components throw these typed classes;
// each carries a `code`, which edge/ maps to an HTTP status in one table
// (edge/errors.ts). Messages are short, public and never contain stack traces,
// paths or secrets.

/** What went wrong, as the edge's status table and the cluster's wire know it. */
export type EdgeErrorCode = 'not_found' | 'bad_request' | 'too_large' | 'unavailable' | 'boot_failed' | 'upstream' | 'timeout';

export abstract class EdgeError extends Error {
  override readonly name: string = this.constructor.name;
  abstract readonly code: EdgeErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** No route for this host/path, or the program is unknown. -> 404 */
export class NotFoundError extends EdgeError {
  readonly code = 'not_found';
}

/** Malformed hash, host or request. -> 400 */
export class BadRequestError extends EdgeError {
  readonly code = 'bad_request';
}

/** The node cannot take this request now (capacity, queue full, draining). -> 503 + Retry-After */
export class UnavailableError extends EdgeError {
  readonly code = 'unavailable';
  constructor(
    message: string,
    readonly retryAfterS: number,
    readonly reason: 'capacity' | 'queue_full' | 'draining' | 'backoff',
  ) {
    super(message);
  }
}

/**
 * The program failed to boot (bad image, crash at start, boot timeout). -> 502 +
 * Retry-After: `retryAfterS` is the wait before the next boot is allowed (backoff).
 */
export class BootFailedError extends EdgeError {
  readonly code = 'boot_failed';
  readonly retryAfterS: number | undefined;
  constructor(message: string, options?: { cause?: unknown; retryAfterS?: number }) {
    super(message, options);
    this.retryAfterS = options?.retryAfterS;
  }
}

/** Whole seconds a client should wait for `ms` (Retry-After takes integers; never 0 while blocked). */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** The program's execution went away while serving (crash, reset). -> 502 */
export class UpstreamError extends EdgeError {
  readonly code = 'upstream';
}

/** The program did not answer within the request timeout. -> 504 */
export class UpstreamTimeoutError extends EdgeError {
  readonly code = 'timeout';
}

/** The request body is larger than the node accepts. -> 413 */
export class PayloadTooLargeError extends EdgeError {
  readonly code = 'too_large';
}
