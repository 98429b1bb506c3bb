import type { SecureContext } from 'node:tls';
import type { TlsMode } from '../config/index.js';
import type { PemPair } from './pair.js';

/** One certificate as listed by the status API. */
export interface CertInfo {
  host: string;
  source: 'internal' | 'files' | 'acme';
  notBefore: string; // ISO 8601
  notAfter: string;
  issuer: string;
  /** Present after a failed issuance or renewal: failures so far, the last error, the next attempt. */
  renewal?: { failures: number; lastError?: string; lastAttempt?: string; nextAttempt?: string };
}

/**
 * What edge/ asks of the TLS component. Async and PEM-free on purpose: a
 * multi-core edge can implement it in workers by asking a primary over IPC.
 */
export interface CertificateResolver {
  /** Secure context for an SNI name; undefined when no certificate can be served. */
  secureContext(servername: string): Promise<SecureContext | undefined>;
  /**
   * TLS-ALPN-01 (acme mode only): the validation context for a host while a challenge
   * is pending. The listener asks for it only when the client negotiated 'acme-tls/1'.
   */
  alpnChallenge?(servername: string): Promise<SecureContext | undefined>;
  /**
   * OCSP staple for the certificate being served (DER leaf and issuer, as Node's
   * 'OCSPRequest' event gives them); undefined means no staple. Never waits for a responder.
   */
  ocspResponse?(certificate: Buffer, issuer: Buffer | null): Promise<Buffer | undefined>;
  /**
   * The PEM pair behind secureContext(): the listener's default certificate (the node
   * domain's), served to clients that send no SNI.
   */
  certificate?(servername: string): Promise<PemPair | undefined>;
  /** Key authorization for an HTTP-01 token, when a challenge is pending. */
  httpChallenge(token: string): Promise<string | undefined>;
  /** Certificates currently loaded or stored. */
  list(): Promise<CertInfo[]>;
}

/**
 * What the node holds for its TLS mode: files mode's resolver or the issuing
 * manager (internal, acme). Adds to CertificateResolver what the node and its
 * workers need: the PEM pair, ALPN validation certificates over IPC, shutdown.
 */
export interface CertificateManager extends CertificateResolver {
  readonly mode: TlsMode;
  certificate(servername: string): Promise<PemPair | undefined>;
  /** The pending TLS-ALPN-01 validation certificate as PEM, for worker processes (IPC). */
  alpnChallengeCertificate(servername: string): PemPair | undefined;
  /** Stops background work; running orders are waited for up to graceMs. */
  close(graceMs?: number): Promise<void>;
}

/** Decides whether a host may get a certificate on demand (ACME issue seam). */
export interface IssuancePolicy {
  allow(host: string): Promise<boolean>;
}
