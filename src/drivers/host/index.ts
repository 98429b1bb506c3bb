// What every driver needs from the host, whatever runs the program: process groups
// (one signal reaches all a program or VMM forked), bounded capture of its output
// into the node log, and free loopback ports. No driver imports another driver; they
// share these through here (and VM drivers share ../vm/).
export { groupAlive, signalGroup, trackGroup, untrackGroup } from './group.js';
export { captureOutput, DEFAULT_OUTPUT_LIMITS, LineRateLimiter, LineSplitter, type OutputLimits, type OutputSink, type StreamName } from './output.js';
export { LOOPBACK_HOST, pickFreePort } from './port.js';
export { exists } from './files.js';
export { withFields } from './log.js';
