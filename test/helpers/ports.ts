import { pickFreePort } from '../../src/drivers/host/index.js';

/**
 * A TCP port that was free a moment ago on `host` (tests bind it right after). The
 * process driver's pick: below the kernel's ephemeral range, so no outgoing connection
 * of another test takes it as its source port in between.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return pickFreePort(host);
}
