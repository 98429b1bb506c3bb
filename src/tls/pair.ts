// Parsing and checking of certificate/key pairs. Every pair is checked here before it
// is stored or served: a pair that fails to parse or whose key does not match the
// leaf certificate must never reach tls.createSecureContext on a live listener.

import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { TLS_PROFILE } from './profile.js';

/** A PEM certificate chain (leaf first) and its PEM private key. */
export interface PemPair {
  certPem: string;
  keyPem: string;
}

export interface ParsedPair extends PemPair {
  leaf: X509Certificate;
  key: KeyObject;
  notBefore: Date;
  notAfter: Date;
  /** DNS names from the leaf's subjectAltName, lowercase. */
  dnsNames: string[];
  /** Issuer DN of the leaf on one line ('CN=..., O=...'). */
  issuerName: string;
  fingerprint256: string;
}

/** Why a pair was refused; the message says what is wrong, never the key material. */
export class PairError extends Error {
  override readonly name = 'PairError';
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The certificate blocks of a PEM bundle, in order. */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(CERT_BLOCK) ?? [];
}

function oneLineName(name: string): string {
  return name.split('\n').filter(Boolean).join(', ');
}

function dnsNamesOf(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (!san) return [];
  return san
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase());
}

/** Parses a pair and checks that the key belongs to the leaf. Throws PairError. */
export function parsePair(pair: PemPair): ParsedPair {
  const blocks = splitPemCertificates(pair.certPem);
  if (blocks.length === 0) throw new PairError('no PEM certificate found');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0]!);
    for (const block of blocks.slice(1)) new X509Certificate(block);
  } catch (err) {
    throw new PairError(`certificate does not parse: ${(err as Error).message}`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pair.keyPem);
  } catch (err) {
    throw new PairError(`private key does not parse: ${(err as Error).message}`);
  }
  if (!leaf.checkPrivateKey(key)) throw new PairError('private key does not match the certificate');
  return {
    certPem: pair.certPem,
    keyPem: pair.keyPem,
    leaf,
    key,
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    dnsNames: dnsNamesOf(leaf),
    issuerName: oneLineName(leaf.issuer),
    fingerprint256: leaf.fingerprint256,
  };
}

/** True when the certificate names this host or wildcard exactly, or a one-label wildcard covers the host. */
export function covers(parsed: ParsedPair, name: string): boolean {
  if (parsed.dnsNames.includes(name)) return true;
  if (name.startsWith('*.')) return false;
  const dot = name.indexOf('.');
  return dot > 0 && parsed.dnsNames.includes(`*.${name.slice(dot + 1)}`);
}

/** The TLS context served for a pair. Throws PairError when OpenSSL refuses it. */
export function secureContextFor(pair: PemPair): SecureContext {
  try {
    return createSecureContext({ cert: pair.certPem, key: pair.keyPem, ...TLS_PROFILE });
  } catch (err) {
    throw new PairError(`TLS context refused: ${(err as Error).message}`);
  }
}

/** When to re-issue: once a third of the lifetime remains. */
export function renewAt(notBefore: Date, notAfter: Date): number {
  const start = notBefore.getTime();
  const end = notAfter.getTime();
  return end - (end - start) / 3;
}
