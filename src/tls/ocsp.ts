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
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate } from '@peculiar/asn1-x509';
import {
  BasicOCSPResponse, CertID, OCSPRequest, OCSPResponse, OCSPResponseStatus, Request, TBSRequest, id_pkix_ocsp_basic,
} from '@peculiar/asn1-ocsp';

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

/** A malformed, unsuccessful or unrelated OCSP response; the stapler logs it and retries later. */
export class OcspResponseError extends Error {
  override readonly name = 'OcspResponseError';
  readonly code = 'ocsp_response_invalid';
}

function parseCertificate(der: Buffer): Certificate {
  return AsnConvert.parse(der, Certificate);
}

/** The serial number's content bytes, as a CertID carries them. */
export function serialOf(leafDer: Buffer): Buffer {
  return Buffer.from(parseCertificate(leafDer).tbsCertificate.serialNumber);
}

/** The DER CertID (SHA-1, as responders expect) of a leaf issued by issuer. */
export function certId(leafDer: Buffer, issuerDer: Buffer): Buffer {
  return Buffer.from(AsnConvert.serialize(certIdOf(leafDer, issuerDer)));
}

function certIdOf(leafDer: Buffer, issuerDer: Buffer): CertID {
  const issuer = parseCertificate(issuerDer).tbsCertificate;
  const sha1 = (data: ArrayBuffer | Uint8Array) => createHash('sha1').update(new Uint8Array(data)).digest();
  return new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: SHA1, parameters: null }),
    // The issuer's DER-encoded Name, and its key's bits without the unused-bits byte.
    issuerNameHash: new OctetString(sha1(AsnConvert.serialize(issuer.subject))),
    issuerKeyHash: new OctetString(sha1(issuer.subjectPublicKeyInfo.subjectPublicKey)),
    serialNumber: new Uint8Array(serialOf(leafDer)).buffer,
  });
}

/** OCSPRequest for one certificate, no nonce (cacheable by responders and CDNs). */
export function ocspRequest(leafDer: Buffer, issuerDer: Buffer): Buffer {
  const request = new OCSPRequest({ tbsRequest: new TBSRequest({ requestList: [new Request({ reqCert: certIdOf(leafDer, issuerDer) })] }) });
  return Buffer.from(AsnConvert.serialize(request));
}

function parseAs<T>(der: ArrayBuffer | ArrayBufferView, type: new () => T, what: string): T {
  try {
    return AsnConvert.parse(der, type);
  } catch (err) {
    throw new OcspResponseError(`malformed OCSP ${what}: ${(err as Error).message}`);
  }
}

/** Reads the status of serial (content bytes, see serialOf) from an OCSPResponse. Throws OcspResponseError on anything malformed or unsuccessful. */
export function parseOcspResponse(der: Buffer, serial: Buffer): OcspStatus {
  const top = parseAs(der, OCSPResponse, 'response');
  if (top.responseStatus !== OCSPResponseStatus.successful) {
    throw new OcspResponseError(`OCSP responder status ${OCSPResponseStatus[top.responseStatus] ?? top.responseStatus}`);
  }
  if (!top.responseBytes) throw new OcspResponseError('OCSP response has no body');
  if (top.responseBytes.responseType !== id_pkix_ocsp_basic) {
    throw new OcspResponseError(`unsupported OCSP response type ${top.responseBytes.responseType}`);
  }
  const basic = parseAs(top.responseBytes.response.buffer, BasicOCSPResponse, 'basic response');
  for (const single of basic.tbsResponseData.responses) {
    if (!Buffer.from(single.certID.serialNumber).equals(serial)) continue;
    const { certStatus } = single;
    return {
      status: certStatus.good !== undefined ? 'good' : certStatus.revoked ? 'revoked' : 'unknown',
      thisUpdate: single.thisUpdate,
      nextUpdate: single.nextUpdate,
    };
  }
  throw new OcspResponseError('OCSP response does not cover this certificate');
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
      const status = parseOcspResponse(der, serialOf(leafDer));
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
