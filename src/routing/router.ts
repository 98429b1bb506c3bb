// Host + request target -> Route, in the order of docs/design.md:
//   1 bare domain (node pages, /vm/<hash>/...)  2 <base32 label>.<domain>
//   3 static [[routes]]  4 _aleph-id.<host> TXT  5 404.
// Immutable: a config reload builds a new Router.

import { BadRequestError, isIpLiteral, labelToHash, normalizeHash, NotFoundError, parseHost } from '../common/index.js';
import type { RouteSettings } from '../config/index.js';
import type { Counter, MetricsRegistry } from '../metrics/index.js';
import { checkTarget, originForm, routeDomainPath } from './path.js';
import type { Route, RouteRequest, TxtLookup } from './types.js';

export interface RouterOptions {
  /** ServerSettings.domain: lowercase, no trailing dot, no port. */
  domain: string;
  /** Static [[routes]]; hosts must be unique. */
  routes?: readonly RouteSettings[];
  /** Rule 4; without it, hosts outside the domain and static routes are 404. */
  txt?: TxtLookup;
  metrics?: MetricsRegistry;
}

/** A request only the `_aleph-id` TXT record of its (checked) host can route. */
interface TxtPending {
  kind: 'txt';
  host: string;
  path: string;
}

export type HostTarget = { kind: 'node' } | { kind: 'program'; hash: string };

/** Label values of aleph_edge_route_total. */
export type RouteVia = 'path' | 'label' | 'static' | 'txt' | 'node' | 'not_found' | 'bad_request';

const VIA_LABELS: Record<RouteVia, { via: string }> = {
  path: { via: 'path' },
  label: { via: 'label' },
  static: { via: 'static' },
  txt: { via: 'txt' },
  node: { via: 'node' },
  not_found: { via: 'not_found' },
  bad_request: { via: 'bad_request' },
};

function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function noProgram(host: string): NotFoundError {
  return new NotFoundError(`no program for host ${host}`);
}

export class Router {
  private readonly domain: string;
  private readonly domainSuffix: string; // '.' + domain
  private readonly statics: ReadonlyMap<string, string>; // host -> hash
  private readonly txt: TxtLookup | undefined;
  private readonly counter: Counter | undefined;

  constructor(options: RouterOptions) {
    this.domain = canonicalName(options.domain);
    if (this.domain.length === 0) throw new Error('routing: server domain is empty');
    this.domainSuffix = '.' + this.domain;
    const statics = new Map<string, string>();
    for (const route of options.routes ?? []) {
      const host = canonicalName(route.host);
      const hash = normalizeHash(route.program);
      // The loader validates these; failing loudly here beats routing to garbage.
      if (hash === undefined) throw new Error(`routing: route for ${host}: program is not a 64-hex hash`);
      if (statics.has(host)) throw new Error(`routing: duplicate route for host ${host}`);
      statics.set(host, hash);
    }
    this.statics = statics;
    this.txt = options.txt;
    this.counter = options.metrics?.counter('aleph_edge_route_total', 'Requests routed, by routing rule or outcome');
  }

  /**
   * Maps a request to a program or a node page. Rejects with BadRequestError
   * (400: bad Host, bad target, malformed hash) or NotFoundError (404: no route).
   */
  async route(req: RouteRequest): Promise<Route> {
    const decided = this.decideNow(req);
    if (decided.kind !== 'txt') return decided;
    try {
      const route = await this.txtRoute(decided.host, decided.path);
      if (route === undefined) throw noProgram(decided.host);
      this.counter?.inc(VIA_LABELS.txt);
      return route;
    } catch (err) {
      this.counter?.inc(VIA_LABELS.not_found);
      throw err;
    }
  }

  /**
   * The route when it is known without waiting: every rule but a TXT lookup. The
   * edge's path for warm programs takes no promise this way. Undefined when only
   * `route()` can tell; throws what `route()` would reject with.
   */
  routeNow(req: RouteRequest): Route | undefined {
    const decided = this.decideNow(req);
    return decided.kind === 'txt' ? undefined : decided;
  }

  /**
   * TLS on-demand policy: may `host` (a bare SNI name) get a certificate? True for
   * the domain itself and hosts that route to a program by rules 2-4. Never throws.
   */
  async routesTo(host: string): Promise<boolean> {
    return (await this.hostTarget(host)) !== undefined;
  }

  /**
   * What a bare host name (SNI) reaches: the node itself, a program hash by rules
   * 2-4, or nothing. Whether that hash is a program is the program source's answer,
   * not routing's. Never throws.
   */
  async hostTarget(host: string): Promise<HostTarget | undefined> {
    let name: string;
    try {
      name = parseHost(host);
    } catch {
      return undefined;
    }
    if (name === this.domain) return { kind: 'node' };
    try {
      const route = await this.hostRoute(name, '/');
      return route?.kind === 'program' ? { kind: 'program', hash: route.hash } : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Rules 1-3 and 5, counted; a TXT lookup to make (rule 4: the checked host and target)
   * is left to the caller, which counts its outcome.
   */
  private decideNow(req: RouteRequest): Route | TxtPending {
    let decided: Route | TxtPending;
    try {
      const host = parseHost(req.host);
      const target = originForm(req.path, host);
      checkTarget(target);
      if (host === this.domain) {
        decided = routeDomainPath(target);
      } else {
        const route = this.hostRouteNow(host, target);
        if (route === undefined) throw noProgram(host);
        decided = route === 'txt' ? { kind: 'txt', host, path: target } : route;
      }
    } catch (err) {
      this.counter?.inc(VIA_LABELS[err instanceof BadRequestError ? 'bad_request' : 'not_found']);
      throw err;
    }
    if (decided.kind !== 'txt') this.counter?.inc(VIA_LABELS[decided.kind === 'node' ? 'node' : decided.via]);
    return decided;
  }

  /** Rules 2-4 for a host other than the domain; undefined means no route (rule 5). */
  private async hostRoute(host: string, path: string): Promise<Route | undefined> {
    const route = this.hostRouteNow(host, path);
    return route === 'txt' ? this.txtRoute(host, path) : route;
  }

  /** Rules 2-3; 'txt' when only the TXT record (rule 4) can tell. */
  private hostRouteNow(host: string, path: string): Route | 'txt' | undefined {
    const underDomain = host.endsWith(this.domainSuffix);
    if (underDomain) {
      const labelLength = host.length - this.domainSuffix.length;
      // Only a single label can be a program label; labelToHash checks length and alphabet.
      if (host.lastIndexOf('.', labelLength - 1) < 0) {
        const hash = labelToHash(host.slice(0, labelLength));
        if (hash !== undefined) return { kind: 'program', hash, path, via: 'label' };
      }
    }

    const staticHash = this.statics.get(host);
    if (staticHash !== undefined) return { kind: 'program', hash: staticHash, path, via: 'static' };

    // Our own subdomains are ours to answer: no DNS round trip for them.
    if (underDomain || this.txt === undefined || isIpLiteral(host)) return undefined;
    return 'txt';
  }

  private async txtRoute(host: string, path: string): Promise<Route | undefined> {
    let value: string | undefined;
    try {
      value = await this.txt!.lookup(host);
    } catch (err) {
      if (err instanceof NotFoundError) throw err;
      throw new NotFoundError('could not resolve _aleph-id record', { cause: err });
    }
    if (value === undefined) return undefined;
    // Other TxtLookup implementations may hand back the raw record.
    const hash = normalizeHash(value);
    if (hash === undefined) throw new NotFoundError('invalid _aleph-id record');
    return { kind: 'program', hash, path, via: 'txt' };
  }
}
