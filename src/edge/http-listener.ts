import type { IncomingMessage, ServerResponse } from 'node:http';
import { createLogger } from '../common/index.js';
import { parseHost } from '../routing/index.js';
import type { CertificateResolver } from '../tls/index.js';
import { replyFor, writeHttpError } from './errors.js';

const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;
const log = createLogger('edge');

/**
 * The plain-HTTP side: ACME HTTP-01 answers, and a 301 to https for everything
 * else (path and query kept).
 */
export function createHttpHandler(certs: CertificateResolver, httpsPort: () => number | undefined, identityHeaders: Readonly<Record<string, string>> = {}) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    for (const [name, value] of Object.entries(identityHeaders)) res.setHeader(name, value);
    try {
      if (url.startsWith(CHALLENGE_PREFIX)) {
        const token = url.slice(CHALLENGE_PREFIX.length);
        const keyAuthorization = TOKEN.test(token) ? await certs.httpChallenge(token) : undefined;
        if (keyAuthorization === undefined) {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('404 no such challenge\n');
          return;
        }
        log.info('answered http-01 challenge', { host: req.headers.host });
        res.writeHead(200, { 'content-type': 'text/plain' }).end(keyAuthorization);
        return;
      }
      const host = parseHost(req.headers.host ?? '');
      const port = httpsPort();
      const authority = (host.includes(':') ? `[${host}]` : host) + (port && port !== 443 ? `:${port}` : '');
      const path = url.startsWith('/') ? url : '/';
      const location = `https://${authority}${path}`;
      res.writeHead(301, { location, 'content-type': 'text/plain', 'content-length': 0, 'cache-control': 'no-store' }).end();
    } catch (error) {
      writeHttpError(res, replyFor(error));
    }
  };
}
