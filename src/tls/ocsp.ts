// OCSP stapling for certificates that name a responder (Authority Information Access,
// "OCSP - URI:"). Handshakes never wait for a responder: get() answers from the cache
// and starts a fetch when there is nothing yet or the cached response is half way to
// its nextUpdate. Certificates without a responder are remembered and skipped
// quietly. Only "good" responses are stapled; a "revoked" answer is logged loudly.
// The response's signature is the client's to check, as with any staple.

import { X509Certificate, createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { fetch } from 'undici';
import type { Logger } from '../common/index.js';
import type { Counter, MetricsRegistry } from '../metrics/index.js';
import { TAG, generalizedTime, oid, readTlv, tlv, type Tlv } from './der.js';

export interface OcspStaplerOptions {
  log: Logger;
  metrics?: MetricsRegistry;
  fetchTimeoutMs?: number;
  /** Wait after a failed fetch (default 5 min). */
  retryMs?: number;
  now?: () => number;
}

interface Entry {
  response?: Buffer;
  /** When the stapled response stops being usable (its nextUpdate). */
  validUntil: number;
  refreshAt: number;
  fetching?: Promise<void>;
  /** The certificate names no responder. */
  none?: boolean;
}

export interface OcspStatus {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: Date;
  nextUpdate?: Date;
}

const SHA1 = '1.3.14.3.2.26';
const HOUR = 3600_000;

/** The OCSP responder URL a certificate names, if any. */
export function responderUrl(cert: X509Certificate): string | undefined {
  for (const line of (cert.infoAccess ?? '').split('\n')) {
    const m = /^OCSP - URI:(\S+)/.exec(line.trim());
    if (m && /^https?:\/\//.test(m[1]!)) return m[1];
  }
  return undefined;
}

function certFields(der: Buffer): { serial: Tlv; subject: Tlv; spki: Tlv } {
  const tbs = readTlv(der).children[0]!;
  const at = tbs.children[0]!.tag === 0xa0 ? 1 : 0;
  return { serial: tbs.children[at]!, subject: tbs.children[at + 4]!, spki: tbs.children[at + 5]! };
}

/** The DER CertID (SHA-1, as responders expect) of a leaf issued by issuer. */
export function certId(leafDer: Buffer, issuerDer: Buffer): Buffer {
  const issuer = certFields(issuerDer);
  const keyBits = issuer.spki.children[1]!.content.subarray(1); // skip the unused-bits byte
  const sha1 = (data: Buffer) => createHash('sha1').update(data).digest();
  return tlv(TAG.SEQUENCE,
    tlv(TAG.SEQUENCE, oid(SHA1), tlv(TAG.NULL)),
    tlv(TAG.OCTET_STRING, sha1(issuer.subject.raw)),
    tlv(TAG.OCTET_STRING, sha1(keyBits)),
    certFields(leafDer).serial.raw);
}

/** OCSPRequest for one certificate, no nonce (cacheable by responders and CDNs). */
export function ocspRequest(leafDer: Buffer, issuerDer: Buffer): Buffer {
  return tlv(TAG.SEQUENCE, tlv(TAG.SEQUENCE, tlv(TAG.SEQUENCE, tlv(TAG.SEQUENCE, certId(leafDer, issuerDer)))));
}

/** Reads the status of serial from an OCSPResponse. Throws on anything malformed or unsuccessful. */
export function parseOcspResponse(der: Buffer, serial: Buffer): OcspStatus {
  const top = readTlv(der);
  const status = top.children[0];
  if (!status || status.tag !== TAG.ENUMERATED) throw new Error('not an OCSP response');
  if (status.content[0] !== 0) throw new Error(`OCSP responder status ${status.content[0]}`);
  const bytes = top.children[1]?.children[0];
  const basic = readTlv(bytes!.children[1]!.content);
  const data = basic.children[0]!;
  const responses = data.children.find((c, i) => c.tag === TAG.SEQUENCE && i > 0 && data.children[i - 1]!.tag === TAG.GENERALIZED_TIME);
  if (!responses) throw new Error('OCSP response has no responses');
  for (const single of responses.children) {
    const [id, certStatus, thisUpdate, ...rest] = single.children;
    if (!id || !certStatus || !thisUpdate) continue;
    if (!id.children[3]?.raw.equals(serial)) continue;
    const next = rest.find((c) => c.tag === 0xa0);
    return {
      status: certStatus.tag === 0x80 ? 'good' : certStatus.tag === 0xa1 ? 'revoked' : 'unknown',
      thisUpdate: generalizedTime(thisUpdate.content),
      nextUpdate: next ? generalizedTime(next.children[0]!.content) : undefined,
    };
  }
  throw new Error('OCSP response does not cover this certificate');
}

export class OcspStapler {
  private readonly entries = new LRUCache<string, Entry>({ max: 10_000 });
  private readonly now: () => number;
  private readonly fetches: Counter | undefined;

  constructor(private readonly options: OcspStaplerOptions) {
    this.now = options.now ?? Date.now;
    this.fetches = options.metrics?.counter('aleph_edge_ocsp_fetches_total', 'OCSP responses fetched for stapling, by result');
  }

  /** The staple for a leaf, from the cache; never waits for the responder. */
  get(leafDer: Buffer, issuerDer: Buffer | null | undefined): Buffer | undefined {
    const key = createHash('sha256').update(leafDer).digest('hex');
    let entry = this.entries.get(key);
    const now = this.now();
    if (!entry) {
      entry = { validUntil: 0, refreshAt: 0 };
      this.entries.set(key, entry);
    }
    if (entry.none) return undefined;
    if (!entry.fetching && now >= entry.refreshAt && issuerDer) {
      entry.fetching = this.refresh(entry, leafDer, issuerDer).finally(() => (entry!.fetching = undefined));
    }
    return entry.response && now < entry.validUntil ? entry.response : undefined;
  }

  /** Fetches now (tests, and a warm-up after issuance); resolves with the staple or undefined. */
  async fetch(leafDer: Buffer, issuerDer: Buffer): Promise<Buffer | undefined> {
    this.get(leafDer, issuerDer);
    const key = createHash('sha256').update(leafDer).digest('hex');
    await this.entries.get(key)?.fetching;
    return this.get(leafDer, issuerDer);
  }

  private async refresh(entry: Entry, leafDer: Buffer, issuerDer: Buffer): Promise<void> {
    const { log } = this.options;
    let url: string | undefined;
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(leafDer);
      url = responderUrl(leaf);
    } catch {
      entry.none = true;
      return;
    }
    if (!url) {
      entry.none = true; // quietly: most test and internal certificates name none
      return;
    }
    const retryMs = this.options.retryMs ?? 5 * 60_000;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' },
        body: ocspRequest(leafDer, issuerDer),
        signal: AbortSignal.timeout(this.options.fetchTimeoutMs ?? 10_000),
      });
      if (res.status !== 200) throw new Error(`responder answered ${res.status}`);
      const der = Buffer.from(await res.arrayBuffer());
      const status = parseOcspResponse(der, certFields(leafDer).serial.raw);
      const now = this.now();
      const nextUpdate = status.nextUpdate?.getTime() ?? now + HOUR;
      if (status.status !== 'good') {
        this.fetches?.inc({ result: status.status });
        log.error(`OCSP responder says ${status.status.toUpperCase()}: not stapling`, { subject: leaf.subject.replace(/\n/g, ','), serial: leaf.serialNumber, responder: url });
        entry.response = undefined;
        entry.refreshAt = now + retryMs;
        return;
      }
      this.fetches?.inc({ result: 'good' });
      entry.response = der;
      entry.validUntil = nextUpdate;
      // Refresh half way through the response's validity.
      const thisUpdate = status.thisUpdate.getTime();
      entry.refreshAt = Math.max(now + 1000, thisUpdate + (nextUpdate - thisUpdate) / 2);
      log.debug('ocsp response cached', { responder: url, next_update: new Date(nextUpdate).toISOString() });
    } catch (err) {
      this.fetches?.inc({ result: 'error' });
      log.warn('ocsp fetch failed; serving without a staple until it works', { responder: url, error: (err as Error).message });
      entry.refreshAt = this.now() + retryMs;
    }
  }
}
