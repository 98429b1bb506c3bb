// Public surface of the TLS component: build a CertificateManager from settings.
// edge/ only needs CertificateResolver (secureContext for SNICallback,
// httpChallenge for :80, list for the status API).

import { createLogger } from '../common/log.js';
import type { TlsSettings } from '../config/types.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import { TlsSetupError } from './errors.js';
import { FileCertificates } from './files.js';
import { InternalCa } from './internal-ca.js';
import type { Issuer } from './issuer.js';
import { CertificateManager } from './manager.js';
import { CertStorage } from './storage.js';
import type { IssuancePolicy } from './types.js';

export type { CertInfo, CertificateResolver, IssuancePolicy } from './types.js';
export type { Issuer } from './issuer.js';
export type { PemPair } from './pair.js';
export { CertificateManager } from './manager.js';
export { TlsSetupError } from './errors.js';
export { internalCaCertPath } from './internal-ca.js';

export interface CertificateManagerDeps {
  policy: IssuancePolicy;
  metrics: MetricsRegistry;
  /** Replaces the mode's issuer (required for mode "acme" until the ACME issuer lands). Its name is the storage folder. */
  issuer?: Issuer;
}

/**
 * Builds the manager for settings.mode. internal: opens (or creates) the CA under
 * settings.storage. files: loads and checks every pair now. Throws TlsSetupError with
 * the offending file's path when something on disk is wrong.
 */
export async function createCertificateManager(settings: TlsSettings, deps: CertificateManagerDeps): Promise<CertificateManager> {
  const log = createLogger('tls');
  const common = { metrics: deps.metrics, cacheSize: settings.cacheSize, log };
  if (settings.mode === 'files') {
    const files = await FileCertificates.load(settings.files, log);
    return new CertificateManager({ ...common, mode: 'files', files });
  }
  const storage = await CertStorage.open(settings.storage, log);
  let issuer = deps.issuer;
  if (!issuer) {
    if (settings.mode !== 'internal') throw new TlsSetupError(`tls.mode = "${settings.mode}" has no issuer yet`);
    const ca = await InternalCa.open(storage.root, log);
    log.info('internal CA ready', { cert: ca.paths.cert, fingerprint: ca.fingerprint256 });
    issuer = ca;
  }
  return new CertificateManager({
    ...common,
    mode: settings.mode,
    storage,
    issuer,
    policy: deps.policy,
    wildcardLookup: settings.wildcard.enabled,
  });
}
