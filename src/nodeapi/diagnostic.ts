// The diagnostic program shipped in examples/diagnostic/ (an ASGI app), as the
// local program the node registers for itself when node.check_program is the default.

import { fileURLToPath } from 'node:url';
import type { LocalProgramSettings, NodeSettings } from '../config/index.js';

/** examples/diagnostic/ of this installation. */
export const DIAGNOSTIC_DIR = fileURLToPath(new URL('../../../examples/diagnostic', import.meta.url));

export interface DiagnosticProgramOptions {
  hash: string;
  node: NodeSettings;
  /** Where /state/increment keeps its counter (the program's persistent volume). */
  stateDir: string;
}

/**
 * What `[[programs.local]] asgi = "main:app", code = "examples/diagnostic"` would
 * give: the process driver serves it with our ASGI server (drivers.process.python).
 */
export function diagnosticProgram(options: DiagnosticProgramOptions): LocalProgramSettings {
  const d = options.node.diagnostic;
  return {
    hash: options.hash,
    name: 'diagnostic',
    command: [],
    cwd: DIAGNOSTIC_DIR,
    env: {
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
    asgi: { app: 'main:app', code: DIAGNOSTIC_DIR },
  };
}
