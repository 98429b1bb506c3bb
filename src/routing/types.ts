/** What a request maps to. */
export type Route =
  | { kind: 'program'; hash: string; path: string; via: 'path' | 'label' | 'static' | 'txt' }
  | { kind: 'node'; page: 'index' | 'about' | 'status' | 'v2' | 'control'; path: string };

export interface RouteRequest {
  host: string; // Host header or :authority, as received (may carry a port)
  path: string; // request target, path + query, as received
}

/** Looks up `_aleph-id.<host>` TXT; resolves to the hash or undefined when absent. */
export interface TxtLookup {
  lookup(host: string): Promise<string | undefined>;
}
