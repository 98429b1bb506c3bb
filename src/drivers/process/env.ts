// The environment a program sees. Deliberately minimal: the node's own environment
// may hold credentials (API tokens, cloud keys) that programs must never read.

import type { ProcessLaunch } from '../../programs/index.js';

/** Variables passed through from the node, when set. */
const INHERITED = ['PATH', 'HOME', 'LANG'] as const;

/** Used when the node itself has no PATH (e.g. started with `env -i`). */
const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

export function buildProgramEnv(
  launch: ProcessLaunch,
  listen: { host: string; port: number },
  parent: NodeJS.ProcessEnv = process.env,
  guest: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of INHERITED) {
    const value = parent[name];
    if (value !== undefined) env[name] = value;
  }
  env.PATH ??= DEFAULT_PATH;
  Object.assign(env, launch.env);
  // The guest API (ALEPH_*) is the node's to say, like the port.
  Object.assign(env, guest);
  // Set last: the program must listen where the proxy will connect.
  env.PORT = String(listen.port);
  env.HOST = listen.host;
  return env;
}
