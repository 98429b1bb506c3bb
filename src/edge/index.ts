export { Edge, listenError } from './edge.js';
export type { EdgeDeps, ListenerInfo } from './edge.js';
export type { RouteTable } from './pipeline.js';
export { inheritedSockets } from './systemd.js';
export type { InheritedSocket } from './systemd.js';
