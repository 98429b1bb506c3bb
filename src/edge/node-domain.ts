import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import { canonicalHost } from '../common/index.js';

/**
 * Headers every response on the node's own domain carries, whatever produced it
 * (node pages, /vm/<hash>/ paths, errors): Strict-Transport-Security when set.
 * Program hosts are left to their programs.
 */
export class NodeDomainHeaders {
  constructor(private readonly domain: string, private readonly hsts: string) {}

  apply(host: string, res: ServerResponse | Http2ServerResponse): void {
    if (this.hsts === '' || !this.isNodeDomain(host)) return;
    res.setHeader('strict-transport-security', this.hsts);
  }

  private isNodeDomain(host: string): boolean {
    // 'Domain', 'domain:443', 'domain.' all name the node domain.
    return canonicalHost(host) === this.domain;
  }
}
