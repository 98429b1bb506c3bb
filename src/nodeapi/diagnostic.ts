// The diagnostic program shipped in examples/diagnostic/ (an ASGI app), as the
// local program the node registers for itself when node.check_program is the default.

import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { LocalProgramSettings, NodeSettings } from '../config/index.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** examples/diagnostic/ of this installation. */
export const DIAGNOSTIC_DIR = path.join(REPO, 'examples', 'diagnostic');
/** guest/: the stdlib ASGI server (aleph_asgi) lives here. */
export const GUEST_DIR = path.join(REPO, 'guest');

export interface DiagnosticProgramOptions {
  hash: string;
  node: NodeSettings;
  /** Where /state/increment keeps its counter (the program's persistent volume). */
  stateDir: string;
  python?: string;
}

/** The process-driver definition: our ASGI server serving main:app on $PORT. */
export function diagnosticProgram(options: DiagnosticProgramOptions): LocalProgramSettings {
  const d = options.node.diagnostic;
  return {
    hash: options.hash,
    name: 'diagnostic',
    command: [
      '/bin/sh', '-c', 'exec "$0" -m aleph_asgi --app main:app --app-dir "$1" --host "$HOST" --port "$PORT"',
      options.python ?? 'python3', DIAGNOSTIC_DIR,
    ],
    cwd: DIAGNOSTIC_DIR,
    env: {
      PYTHONPATH: GUEST_DIR,
      PYTHONDONTWRITEBYTECODE: '1',
      DIAGNOSTIC_STATE_DIR: options.stateDir,
      DIAGNOSTIC_INTERNET_URL: d.internetUrl,
      DIAGNOSTIC_IPV4_TARGET: d.ipv4Target,
      DIAGNOSTIC_IPV6_TARGET: d.ipv6Target,
      DIAGNOSTIC_DNS_HOSTNAME: d.dnsHostname,
    },
    memoryMib: 64,
    vcpus: 1,
    healthPath: '',
    requestTimeoutMs: 0,
  };
}
