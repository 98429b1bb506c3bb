import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';

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
    const d = this.domain;
    // 'Domain', 'domain:443', 'domain.' all name the node domain.
    if (host.length < d.length || host.slice(0, d.length).toLowerCase() !== d) return false;
    const rest = host.slice(d.length);
    return rest === '' || rest === '.' || /^\.?:\d+$/.test(rest);
  }
}
