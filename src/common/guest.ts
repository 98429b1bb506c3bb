// Where this package's guest code (guest/: the ASGI server, the init, the runtime builder) lives,
// found from this module's own location so it works from the repo and once installed.

import { fileURLToPath } from 'node:url';

/** Absolute path of the package's `guest/` folder (this file is dist/src/common/guest.js). */
export const GUEST_DIR = fileURLToPath(new URL('../../../guest', import.meta.url));

/** Where `guest/` appears inside a sandbox or a VM (read-only); PYTHONPATH points here. */
export const GUEST_MOUNT = '/opt/aleph-guest';

/** `module:attribute` as the ASGI server's --app takes it (dotted Python identifiers). */
export const ASGI_APP_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
