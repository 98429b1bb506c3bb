// Background renewal. Every interval the scheduler reads the metadata of the issuer's
// stored certificates (meta.json only) and renews those with a third of their lifetime
// left, minus a per-name jitter so certificates issued together are not renewed in
// one burst. Names that must exist (the configured wildcards) are ordered when
// missing. Failures back off per name (the manager's backoff) and show in /certs and
// metrics; an expired certificate whose renewal keeps failing is logged as an error
// on every attempt. Handshakes never wait for any of this.

import { createHash } from 'node:crypto';
import type { Logger } from '../common/index.js';
import type { Counter, MetricsRegistry } from '../metrics/index.js';
import type { IssuingManager } from './manager.js';
import type { CertMeta, CertStorage } from './storage.js';

export interface RenewalSchedulerOptions {
  manager: IssuingManager;
  storage: CertStorage;
  issuerName: string;
  /** Names ordered when missing (e.g. '*.example.org'); renewed without asking the policy. */
  required: string[];
  metrics: MetricsRegistry;
  log: Logger;
  /** Scan period (default 10 min). */
  intervalMs?: number;
  /** Up to this fraction of the lifetime earlier than the 2/3 point (default 0.05). */
  jitter?: number;
  now?: () => number;
}

/** A stable number in [0, 1) per name. */
function spread(name: string): number {
  return createHash('sha256').update(name).digest().readUInt32BE(0) / 2 ** 32;
}

export class RenewalScheduler {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly renewals: Counter;
  private stored = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly options: RenewalSchedulerOptions) {
    this.now = options.now ?? Date.now;
    this.renewals = options.metrics.counter('aleph_edge_cert_renewals_total', 'Background renewals, by result (renewed, failed, refused, obtained)');
    options.metrics
      .gauge('aleph_edge_certs_stored', 'Stored certificates of the ACME issuer at the last renewal scan, by kind (host, wildcard)')
      .collect(() => [...this.stored].map(([kind, n]) => [{ source: 'acme', kind }, n]));
  }

  /**
   * Obtains the required names now; the first full scan (which reads every meta.json)
   * waits a little so start-up stays fast, then one runs every interval.
   */
  start(): void {
    this.stopped = false;
    const interval = this.options.intervalMs ?? 10 * 60_000;
    const tick = (full: boolean) => {
      if (this.stopped) return;
      void (full ? this.scan() : this.obtainRequired())
        .catch((err) => this.options.log.error('renewal scan failed', { error: (err as Error).message }))
        .finally(() => {
          if (!this.stopped) {
            this.timer = setTimeout(() => tick(true), full ? interval : Math.min(interval, 30_000));
            this.timer.unref();
          }
        });
    };
    tick(false);
  }

  /** Orders the required names that are missing, expired or due (each loaded from storage first). */
  async obtainRequired(skip = new Set<string>()): Promise<void> {
    const { manager, log } = this.options;
    for (const name of this.options.required) {
      if (skip.has(name) || manager.inBackoff(name)) continue;
      try {
        await manager.obtain(name);
        this.renewals.inc({ result: 'obtained' });
      } catch (err) {
        this.renewals.inc({ result: 'failed' });
        log.error('could not obtain a required certificate; retrying with backoff', { name, error: (err as Error).message, next_attempt: manager.renewalState(name)?.nextAttempt });
      }
    }
  }

  /** No new scan starts; a running one stops before its next renewal. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** One pass: order missing required names, renew what is due. */
  async scan(): Promise<void> {
    const { storage, issuerName, manager } = this.options;
    const metas = (await storage.list()).filter((m) => m.issuer === issuerName);
    const byName = new Map(metas.map((m) => [m.host, m]));
    this.stored = new Map([
      ['host', metas.filter((m) => !m.host.startsWith('*.')).length],
      ['wildcard', metas.filter((m) => m.host.startsWith('*.')).length],
    ]);
    // Stored, unexpired required names are handled by the due check below.
    await this.obtainRequired(new Set(this.options.required.filter((name) => {
      const meta = byName.get(name);
      return meta !== undefined && this.now() < Date.parse(meta.notAfter);
    })));
    for (const meta of metas) {
      if (this.stopped) return;
      if (!this.due(meta) || manager.inBackoff(meta.host)) continue;
      await this.renewOne(meta);
    }
  }

  private due(meta: CertMeta): boolean {
    const notBefore = Date.parse(meta.notBefore);
    const notAfter = Date.parse(meta.notAfter);
    const lifetime = notAfter - notBefore;
    if (!(lifetime > 0)) return false;
    const at = notAfter - lifetime / 3 - spread(meta.host) * (this.options.jitter ?? 0.05) * lifetime;
    return this.now() >= at;
  }

  private async renewOne(meta: CertMeta): Promise<void> {
    const { manager, log } = this.options;
    const wildcard = meta.host.startsWith('*.');
    // A wildcard for a domain we no longer serve is left to expire.
    if (wildcard && !this.options.required.includes(meta.host)) return;
    try {
      const renewed = await manager.renew(meta.host, { askPolicy: !wildcard });
      this.renewals.inc({ result: renewed ? 'renewed' : 'refused' });
      if (!renewed) log.info('renewal refused by policy; the certificate will expire', { host: meta.host, not_after: meta.notAfter });
    } catch (err) {
      this.renewals.inc({ result: 'failed' });
      const expired = this.now() >= Date.parse(meta.notAfter);
      const fields = { host: meta.host, not_after: meta.notAfter, error: (err as Error).message, next_attempt: manager.renewalState(meta.host)?.nextAttempt };
      if (expired) log.error('CERTIFICATE EXPIRED AND RENEWAL FAILING: clients are refused for this host', fields);
      else log.warn('certificate renewal failed; retrying with backoff, the current certificate is still served', fields);
    }
  }
}
