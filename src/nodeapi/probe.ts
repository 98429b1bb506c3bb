// Outbound HTTP(S) probes for the checks: one connection each (no agent, no
// keep-alive), a hard deadline, the body read to a cap. Nothing outlives the call.

import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';

export interface ProbeReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface ProbeOptions {
  url: string;
  signal: AbortSignal;
  /** Connect here instead of resolving the URL's host (the node calling itself). */
  connectTo?: { host: string; port: number };
  /** Host header and SNI when connecting elsewhere. */
  hostHeader?: string;
  family?: 4 | 6;
  maxBodyBytes?: number;
}

export function probe(options: ProbeOptions): Promise<ProbeReply> {
  const url = new URL(options.url);
  const secure = url.protocol === 'https:';
  const max = options.maxBodyBytes ?? 1024 * 1024;
  return new Promise((resolve, reject) => {
    const req = (secure ? https : http).request({
      host: options.connectTo?.host ?? url.hostname.replace(/^\[|\]$/g, ''),
      port: options.connectTo?.port ?? (url.port || (secure ? 443 : 80)),
      path: url.pathname + url.search,
      method: 'GET',
      family: options.family,
      agent: false,
      signal: options.signal,
      headers: { host: options.hostHeader ?? url.host, connection: 'close', 'user-agent': 'aleph-edge-check' },
      // Probes check reachability and programs, not certificates (the node may call itself by address).
      ...(secure ? { rejectUnauthorized: false, servername: sniFor(options.hostHeader ?? url.hostname) } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= max) chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** SNI carries names only, never addresses. */
function sniFor(host: string): string | undefined {
  const bare = host.replace(/^\[|\]$/g, '').replace(/:\d+$/, '');
  return isIP(bare) ? undefined : bare;
}
