// tls.mode = "files": operator-provided cert/key pairs, all loaded and checked at
// startup so a bad file stops the node with its path instead of failing handshakes
// later. Lookup: an exact host wins over a '*.parent' wildcard, which covers exactly
// one label (a.example.org, not a.b.example.org), as browsers do.

import { readFile } from 'node:fs/promises';
import type { SecureContext } from 'node:tls';
import type { Logger } from '../common/index.js';
import type { TlsFilePair } from '../config/index.js';
import { TlsSetupError } from './errors.js';
import { isCertName, wildcardFor } from './hostname.js';
import { covers, parsePair, secureContextFor, type ParsedPair, type PemPair } from './pair.js';
import type { CertInfo } from './types.js';

interface FileCert {
  context: SecureContext;
  pair: ParsedPair;
  certPath: string;
}

export class FileCertificates {
  private constructor(
    private readonly byName: Map<string, FileCert>,
    private readonly infos: CertInfo[],
  ) {}

  /** Reads and checks every pair. Throws TlsSetupError naming the file and the tls.files entry. */
  static async load(pairs: TlsFilePair[], log: Logger, now = Date.now()): Promise<FileCertificates> {
    const byName = new Map<string, FileCert>();
    const infos: CertInfo[] = [];
    for (const [index, entry] of pairs.entries()) {
      const where = `tls.files[${index}]`;
      if (entry.hosts.length === 0) throw new TlsSetupError(`${where}: no hosts for ${entry.cert}`);
      const certPem = await readPem(entry.cert, `${where}: cannot read certificate`);
      const keyPem = await readPem(entry.key, `${where}: cannot read key`);
      let pair: ParsedPair;
      let context: SecureContext;
      try {
        pair = parsePair({ certPem, keyPem });
        context = secureContextFor(pair);
      } catch (err) {
        throw new TlsSetupError(`${where}: ${entry.cert} with key ${entry.key}: ${(err as Error).message}`);
      }
      if (pair.notAfter.getTime() <= now) {
        log.warn('certificate file has expired; serving it anyway', { cert: entry.cert, not_after: pair.notAfter.toISOString() });
      }
      const cert: FileCert = { context, pair, certPath: entry.cert };
      for (const raw of entry.hosts) {
        const name = raw.toLowerCase();
        if (!isCertName(name)) throw new TlsSetupError(`${where}: invalid host ${JSON.stringify(raw)}`);
        if (!covers(pair, name)) {
          log.warn('certificate file does not name this host; clients will reject it', { cert: entry.cert, host: name });
        }
        if (byName.has(name)) {
          log.warn('host listed in two tls.files entries; the first one is used', { host: name, cert: entry.cert });
          continue;
        }
        byName.set(name, cert);
        infos.push({
          host: name,
          source: 'files',
          notBefore: pair.notBefore.toISOString(),
          notAfter: pair.notAfter.toISOString(),
          issuer: pair.issuerName,
        });
      }
      log.info('certificate file loaded', { cert: entry.cert, hosts: entry.hosts.join(','), not_after: pair.notAfter.toISOString() });
    }
    return new FileCertificates(byName, infos);
  }

  /** The certificate for a normalized host name: exact match first, then a one-label wildcard. */
  lookup(host: string): { context: SecureContext; pem: PemPair } | undefined {
    const wildcard = wildcardFor(host);
    const found = this.byName.get(host) ?? (wildcard ? this.byName.get(wildcard) : undefined);
    return found ? { context: found.context, pem: found.pair } : undefined;
  }

  list(): CertInfo[] {
    return [...this.infos];
  }

  get size(): number {
    return this.byName.size;
  }
}

async function readPem(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new TlsSetupError(`${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
