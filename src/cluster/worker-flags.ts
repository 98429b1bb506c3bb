// V8 settings for the workers, which do all of the request handling.
//
// A worker's garbage is almost all per-request (headers, requests, closures, socket
// buffers), yet V8 grows the young generation up to 16 MiB per semi-space, and each
// scavenge then copies whatever the in-flight requests (and already-promoted ones)
// still reference: on the paced benchmark those pauses took 10-20 ms every second or
// so, which is the p99. A young generation capped at a few MiB scavenges more often,
// each pause being proportional to what survives since the last one.

/** Flags a worker gets unless the operator already set them (node flags or NODE_OPTIONS). */
export const WORKER_V8_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

/** The primary's own node flags, plus each worker flag the operator did not set. */
export function workerExecArgv(parentExecArgv: readonly string[], nodeOptions = ''): string[] {
  const given = [...parentExecArgv, ...nodeOptions.split(/\s+/)].filter(Boolean).map(flagName);
  return [...parentExecArgv, ...WORKER_V8_FLAGS.filter((flag) => !given.includes(flagName(flag)))];
}

/** '--max-semi-space-size=2' and '--max_semi_space_size' name the same V8 flag. */
function flagName(arg: string): string {
  return arg.split('=')[0]!.replace(/_/g, '-');
}
