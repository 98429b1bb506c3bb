// tls.mode = "files": serves the operator's pairs (FileCertificates) and nothing else.
// No storage, issuer, policy or renewal: those belong to the issuing modes (manager.ts).

import type { SecureContext } from 'node:tls';
import type { Logger } from '../common/index.js';
import type { MetricsRegistry } from '../metrics/index.js';
import type { FileCertificates } from './files.js';
import { normalizeServerName } from './hostname.js';
import { LookupTimer } from './lookup-timer.js';
import type { PemPair } from './pair.js';
import type { CertInfo, CertificateManager } from './types.js';

export interface FilesResolverOptions {
  files: FileCertificates;
  metrics: MetricsRegistry;
  log: Logger;
}

export class FilesResolver implements CertificateManager {
  readonly mode = 'files' as const;
  private readonly files: FileCertificates;
  private readonly log: Logger;
  private readonly timer: LookupTimer;

  constructor(options: FilesResolverOptions) {
    this.files = options.files;
    this.log = options.log;
    this.timer = new LookupTimer(options.metrics);
    options.metrics
      .gauge('aleph_edge_certs_cached', 'Certificates held in the in-memory cache (files mode: configured names)')
      .collect(() => [[{}, this.files.size]]);
  }

  async secureContext(servername: string): Promise<SecureContext | undefined> {
    return (await this.find(servername))?.context;
  }

  async certificate(servername: string): Promise<PemPair | undefined> {
    return (await this.find(servername))?.pem;
  }

  private find(servername: string): Promise<{ context: SecureContext; pem: PemPair } | undefined> {
    return this.timer.time(async () => {
      const host = normalizeServerName(servername);
      if (!host) {
        this.log.debug('server name refused', { servername: String(servername).slice(0, 300) });
        return undefined;
      }
      return this.files.lookup(host);
    });
  }

  /** Nothing is ever issued here, so no challenge is ever pending. */
  async httpChallenge(): Promise<string | undefined> {
    return undefined;
  }

  alpnChallengeCertificate(): PemPair | undefined {
    return undefined;
  }

  async list(): Promise<CertInfo[]> {
    return this.files.list();
  }

  async close(): Promise<void> {}
}
