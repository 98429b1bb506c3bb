import type { IncomingMessage, ServerResponse } from 'node:http';
import { hashToLabel } from '../common/index.js';

export interface PageInfo {
  domain: string;
  version: string;
  startedAt: number;
}

const EXAMPLE_HASH = '0'.repeat(64);

/** The node's own pages on the bare domain: small, static, nothing internal. */
export function servePage(page: 'index' | 'about' | 'status', req: IncomingMessage, res: ServerResponse, info: PageInfo): void {
  let body: string;
  let type = 'text/plain; charset=utf-8';
  switch (page) {
    case 'index':
      body = [
        `aleph-edge node for ${info.domain}`,
        '',
        'Programs are served at:',
        `  https://${info.domain}/vm/<program hash>/<path>`,
        `  https://<base32 of the hash>.${info.domain}/<path>   (e.g. ${hashToLabel(EXAMPLE_HASH)}.${info.domain})`,
        '',
      ].join('\n');
      break;
    case 'about':
      body = `aleph-edge ${info.version}\n`;
      break;
    case 'status':
      type = 'application/json';
      body = JSON.stringify({ status: 'ok', version: info.version, uptime_s: Math.round((Date.now() - info.startedAt) / 1000) }) + '\n';
      break;
  }
  res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
}
