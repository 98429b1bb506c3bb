// Refusals of /control/*, each with a code; statusOf() is the one place codes become
// HTTP statuses. Messages are public: short, no secrets, no stack traces.

export type ControlErrorCode =
  | 'bad_request' // malformed body, header or ref -> 400
  | 'unauthenticated' // signature missing, invalid, stale, replayed, expired -> 401
  | 'forbidden' // valid signature, but not the owner nor a delegate -> 403
  | 'not_found' // no such program here -> 404
  | 'too_large' // body over the cap, refused before any signature work -> 413
  | 'unavailable'; // the Aleph API could not be asked -> 503

export class ControlError extends Error {
  override readonly name = 'ControlError';
  /** The reference answers owner-authentication refusals as {"error": reason}, the others as text. */
  constructor(readonly code: ControlErrorCode, message: string, readonly shape: 'text' | 'json' = 'text') {
    super(message);
  }
}

const STATUS: Record<ControlErrorCode, number> = {
  bad_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  too_large: 413,
  unavailable: 503,
};

export function statusOf(code: ControlErrorCode): number {
  return STATUS[code];
}
