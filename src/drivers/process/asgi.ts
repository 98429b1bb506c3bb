// ASGI programs under the process driver: our server (guest/aleph_asgi) with the
// host's python, listening where the proxy connects.

import type { AsgiServe } from '../../programs/index.js';

/**
 * The argv that serves `asgi` (`<python> -m aleph_asgi ...`). Sets PYTHONPATH in `env`
 * so the interpreter finds the server; the program's own PYTHONPATH entries come after it.
 */
export function asgiCommand(
  asgi: AsgiServe,
  python: string,
  listen: { host: string; port: number },
  env: Record<string, string>,
  ownPythonPath: string | undefined,
): string[] {
  env.PYTHONPATH = ownPythonPath ? `${asgi.guestDir}:${ownPythonPath}` : asgi.guestDir;
  // No .pyc files written next to the (possibly read-only, shared) guest/ and app folders.
  env.PYTHONDONTWRITEBYTECODE = '1';
  return [
    python, '-m', 'aleph_asgi',
    '--app', asgi.app,
    '--app-dir', asgi.appDir,
    '--host', listen.host,
    '--port', String(listen.port),
  ];
}
