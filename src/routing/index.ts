export type { Route, RouteRequest, TxtLookup } from './types.js';
export { Router } from './router.js';
export type { RouterOptions, RouteVia } from './router.js';
export { DnsTxtLookup } from './txt.js';
export type { DnsTxtLookupOptions, TxtLookupResult } from './txt.js';
export { parseHost, isIpLiteral } from '../common/index.js';
export { mountPrefix } from './path.js';
