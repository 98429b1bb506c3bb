import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BadRequestError, BootFailedError, NotFoundError, PayloadTooLargeError, UnavailableError, UpstreamError, UpstreamTimeoutError, setLogLevel,
} from '../../src/common/index.js';
import { replyFor } from '../../src/edge/errors.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

describe('error codes -> statuses (edge/errors.ts)', () => {
  it('maps every error class by its code, with Retry-After where the client should come back', () => {
    const cases: Array<[Error, { status: number; kind: string; retryAfterS?: number }]> = [
      [new NotFoundError('no route'), { status: 404, kind: 'not_found' }],
      [new BadRequestError('invalid Host header'), { status: 400, kind: 'bad_request' }],
      [new PayloadTooLargeError('too big'), { status: 413, kind: 'too_large' }],
      [new UnavailableError('node is at capacity', 5, 'capacity'), { status: 503, kind: 'capacity', retryAfterS: 5 }],
      [new UnavailableError('too many waiting', 1, 'queue_full'), { status: 503, kind: 'queue_full', retryAfterS: 1 }],
      [new BootFailedError('program failed to boot: x', { retryAfterS: 4 }), { status: 502, kind: 'boot_failed', retryAfterS: 4 }],
      [new BootFailedError('program failed to boot: y'), { status: 502, kind: 'boot_failed', retryAfterS: 1 }],
      [new UpstreamError('reset'), { status: 502, kind: 'upstream' }],
      [new UpstreamTimeoutError('slow'), { status: 504, kind: 'timeout' }],
    ];
    for (const [error, expected] of cases) {
      assert.deepEqual(replyFor(error), { message: error.message, ...expected }, error.constructor.name);
    }
  });

  it('anything else is a 500 that shows nothing of the error', () => {
    const reply = replyFor(new TypeError('secret /etc/path at line 3'));
    assert.deepEqual(reply, { status: 500, message: 'internal error', kind: 'internal' });
  });
});
