// Log records of one execution carry its hash and execution id, whichever driver runs it.

import type { Logger, LogFields } from '../../common/index.js';

/** A logger that adds fixed fields to every record. */
export function withFields(base: Logger, fixed: LogFields): Logger {
  return {
    debug: (m, f) => base.debug(m, { ...fixed, ...f }),
    info: (m, f) => base.info(m, { ...fixed, ...f }),
    warn: (m, f) => base.warn(m, { ...fixed, ...f }),
    error: (m, f) => base.error(m, { ...fixed, ...f }),
    child: (name) => withFields(base.child(name), fixed),
  };
}
