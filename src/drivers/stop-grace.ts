// A program's stop grace: the operator's orchestrator.stop_grace, but never shorter than
// the program's own orderly shutdown, so that SIGKILL (or QMP quit, or a VM reset) never
// cuts a shutdown that is still within its own limits.

/** Our ASGI server (guest/aleph_asgi): in-flight requests get 3 s, then lifespan shutdown 10 s. */
export const ASGI_SHUTDOWN_S = 13;

/** What the host waits beyond the program's own limit: its exit, the guest's unmounts and reset. */
const MARGIN_MS = 2_000;

/** The grace to give a program whose own shutdown may take `programShutdownS` (0: no claim). */
export function stopGrace(configuredMs: number, programShutdownS: number): number {
  return programShutdownS > 0 ? Math.max(configuredMs, programShutdownS * 1000 + MARGIN_MS) : configuredMs;
}
