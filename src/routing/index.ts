export type { Route, RouteRequest, TxtLookup } from './types.js';
