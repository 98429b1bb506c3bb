// Public surface of the TLS component: build a CertificateManager from settings
// (files mode: FilesResolver; internal and acme: IssuingManager).
// edge/ only needs CertificateResolver (secureContext for SNICallback,
// httpChallenge for :80, list for the status API).

import { createLogger } from '../common/index.js';
import type { TlsSettings } from '../config/index.js';
import type { MetricsRegistry } from '../metrics/index.js';
import { setAcmeHttpRetry, trustDirectoryCa } from './acme-account.js';
import { AcmeIssuer } from './acme-issuer.js';
import { AlpnChallengeStore } from './alpn-challenges.js';
import { ChallengeStore } from './challenges.js';
import { DnsHook } from './dns-hook.js';
import { TlsSetupError } from './errors.js';
import { OcspStapler } from './ocsp.js';
import { OnDemandPolicy } from './policy.js';
import { TokenBucket } from './rate-limit.js';
import { RenewalScheduler } from './renewal.js';
import { FileCertificates } from './files.js';
import { InternalCa } from './internal-ca.js';
import type { Issuer } from './issuer.js';
import { FilesResolver } from './files-resolver.js';
import { IssuingManager } from './manager.js';
import { CertStorage } from './storage.js';
import type { CertificateManager, IssuancePolicy } from './types.js';

export type { CertInfo, CertificateManager, CertificateResolver, IssuancePolicy } from './types.js';
export type { Issuer } from './issuer.js';
export type { PemPair } from './pair.js';
export { TLS_PROFILE, type TlsProfile } from './profile.js';
export { TlsSetupError } from './errors.js';
export { internalCaCertPath } from './internal-ca.js';

export interface CertificateManagerDeps {
  /** The node's answer (host reaches an existing program, or is the node), which OnDemandPolicy combines with ask/wildcard/on_demand. */
  policy: IssuancePolicy;
  metrics: MetricsRegistry;
  /** server.domain: the wildcard's domain. */
  domain?: string;
  /** Replaces the mode's issuer. Its name is the storage folder. */
  issuer?: Issuer;
  /** Tuning for tests: ACME polling, renewal scan period, handshake wait, failure backoff. */
  acme?: {
    backoff?: { attempts: number; minMs: number; maxMs: number };
    renewalIntervalMs?: number;
    issueWaitMs?: number;
    failureBackoff?: { initialMs: number; maxMs: number };
    dnsHookTimeoutMs?: number;
    /** acme-client's retries of failed HTTP requests (process-wide; default 5 attempts, 5 s apart). */
    httpRetry?: { attempts: number; delaySeconds: number };
  };
}

/**
 * Builds the manager for settings.mode. internal: opens (or creates) the CA under
 * settings.storage. files: loads and checks every pair now. Throws TlsSetupError with
 * the offending file's path when something on disk is wrong.
 */
export async function createCertificateManager(settings: TlsSettings, deps: CertificateManagerDeps): Promise<CertificateManager> {
  const log = createLogger('tls');
  if (settings.mode === 'files') {
    const files = await FileCertificates.load(settings.files, log);
    return new FilesResolver({ files, metrics: deps.metrics, log });
  }
  const storage = await CertStorage.open(settings.storage, log);
  if (settings.mode === 'acme') return createAcmeManager(settings, deps, storage, log);
  let issuer = deps.issuer;
  if (!issuer) {
    if (settings.mode !== 'internal') throw new TlsSetupError(`tls.mode = "${settings.mode}" has no issuer yet`);
    const ca = await InternalCa.open(storage.root, log);
    log.info('internal CA ready', { cert: ca.paths.cert, fingerprint: ca.fingerprint256 });
    issuer = ca;
  }
  // The internal CA mints under the same on-demand policy and issue_rate as ACME
  // orders: a flood of names must not cost a key pair and a signature each.
  const policy = new OnDemandPolicy({ onDemand: settings.onDemand, routesTo: (host) => deps.policy.allow(host), ask: settings.ask, wildcardDomains: [], log });
  return new IssuingManager({
    metrics: deps.metrics,
    cacheSize: settings.cacheSize,
    log,
    mode: settings.mode,
    storage,
    issuer,
    policy,
    wildcardLookup: settings.wildcard.enabled,
    rateLimit: new TokenBucket(settings.issueRate),
  });
}

/**
 * mode = "acme": the ACME issuer, the on-demand policy (routing or ask URL, wildcard
 * coverage, on_demand), the issue_rate bucket, and the renewal scheduler, which also
 * obtains the configured wildcard at start-up.
 */
async function createAcmeManager(settings: TlsSettings, deps: CertificateManagerDeps, storage: CertStorage, log: ReturnType<typeof createLogger>): Promise<CertificateManager> {
  try {
    await trustDirectoryCa(settings.directoryCa);
  } catch (err) {
    throw new TlsSetupError(`tls.directory_ca: cannot read ${settings.directoryCa}: ${(err as Error).message}`);
  }
  const tuning = deps.acme ?? {};
  if (tuning.httpRetry) await setAcmeHttpRetry(tuning.httpRetry.attempts, tuning.httpRetry.delaySeconds);
  const challenges = new ChallengeStore();
  const alpnChallenges = new AlpnChallengeStore();
  const wildcardDomains: string[] = [];
  let dns: DnsHook | undefined;
  if (settings.wildcard.enabled) {
    if (!deps.domain) throw new TlsSetupError('tls.wildcard needs server.domain');
    wildcardDomains.push(deps.domain);
    dns = new DnsHook({ command: settings.wildcard.dnsHook, log, timeoutMs: tuning.dnsHookTimeoutMs });
  }
  const issuer = deps.issuer ?? new AcmeIssuer({
    directory: settings.directory,
    email: settings.email,
    eab: settings.eab,
    storage,
    challenges: settings.challenges,
    http: challenges,
    alpn: alpnChallenges,
    dns,
    metrics: deps.metrics,
    log,
    backoff: tuning.backoff,
    caBackoff: tuning.failureBackoff,
  });
  const policy = new OnDemandPolicy({
    onDemand: settings.onDemand,
    routesTo: (host) => deps.policy.allow(host),
    ask: settings.ask,
    wildcardDomains,
    log,
  });
  const manager = new IssuingManager({
    mode: 'acme',
    metrics: deps.metrics,
    cacheSize: settings.cacheSize,
    log,
    storage,
    issuer,
    policy,
    challenges,
    alpnChallenges,
    wildcardLookup: settings.wildcard.enabled,
    wildcardDomains,
    rateLimit: new TokenBucket(settings.issueRate),
    issueWaitMs: tuning.issueWaitMs,
    ocsp: new OcspStapler({ log, metrics: deps.metrics }),
    backoff: tuning.failureBackoff,
  });
  const scheduler = new RenewalScheduler({
    manager,
    storage,
    issuerName: issuer.name,
    required: wildcardDomains.map((domain) => `*.${domain}`),
    metrics: deps.metrics,
    log,
    intervalMs: tuning.renewalIntervalMs,
  });
  scheduler.start();
  manager.onClose(() => scheduler.stop());
  log.info('acme issuer ready', { directory: settings.directory, issuer: issuer.name, challenges: settings.challenges.join(','), on_demand: settings.onDemand, wildcard: wildcardDomains.join(',') || undefined });
  return manager;
}

