import { isDeepStrictEqual } from 'node:util';
import { defaultNodeSettings, type Settings } from '../config/index.js';

// Sections a reload cannot apply in place: listeners, TLS and the driver are bound
// at start-up. They are reported so an operator knows a restart is needed.
const RESTART_ONLY: Array<[string, (s: Settings) => unknown]> = [
  ['server', (s) => s.server],
  ['tls', (s) => s.tls],
  ['orchestrator.driver', (s) => s.orchestrator.driver],
  ['orchestrator.stop_grace', (s) => s.orchestrator.stopGraceMs],
  ['programs.source', (s) => s.programs.source],
  ['guest_api', (s) => s.guestApi],
  // The Server header is fixed in every worker's pages at start.
  ['node.aleph_vm_version', (s) => (s.node ?? defaultNodeSettings()).alephVmVersion],
];

export function restartOnlyChanges(current: Settings, next: Settings): string[] {
  return RESTART_ONLY.filter(([, pick]) => !isDeepStrictEqual(pick(current), pick(next))).map(([key]) => key);
}
