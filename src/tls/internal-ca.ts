// The development CA: made once on first start in <storage>/internal/{ca.crt,ca.key}
// and reused afterwards. Clients trust it by file (curl --cacert .../ca.crt), so it
// is never replaced silently: unreadable, mismatched or expired CA files stop the
// node with a message naming the file, and the operator decides.

import { X509Certificate as NodeCertificate, createPrivateKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { createLogger, type Logger } from '../common/index.js';
import { atomicWriteFile, ensureDir } from './atomic.js';
import { TlsSetupError } from './errors.js';
import { isCertName } from './hostname.js';
import type { Issuer } from './issuer.js';
import { lock } from './lock.js';
import type { PemPair } from './pair.js';

export const INTERNAL_ISSUER = 'internal';

// @peculiar/x509 is typed against the DOM's Crypto; node's webcrypto is that API.
type X509Crypto = Parameters<typeof x509.X509CertificateGenerator.create>[1];
type CryptoKey = webcrypto.CryptoKey;
const crypto = webcrypto;
const x509Crypto = webcrypto as unknown as X509Crypto;
const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const HOUR = 60 * 60_000;
const DAY = 24 * HOUR;
const CA_LIFETIME_MS = 3650 * DAY;
const LEAF_LIFETIME_MS = 30 * DAY;
// Backdated so a client whose clock runs a little behind still accepts a fresh cert.
const BACKDATE_MS = HOUR;

export interface InternalCaPaths {
  dir: string;
  cert: string;
  key: string;
  lock: string;
}

/** Where the internal CA lives under a tls.storage folder. */
export function internalCaPaths(storageRoot: string): InternalCaPaths {
  const dir = join(storageRoot, INTERNAL_ISSUER);
  return { dir, cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key'), lock: join(dir, 'ca.lock') };
}

/** The CA certificate clients should trust for tls.mode = "internal". */
export function internalCaCertPath(storageRoot: string): string {
  return internalCaPaths(storageRoot).cert;
}

export interface LeafValidity {
  notBefore: Date;
  notAfter: Date;
}

export class InternalCa implements Issuer {
  readonly name = INTERNAL_ISSUER;

  private constructor(
    readonly paths: InternalCaPaths,
    /** PEM of the CA certificate. */
    readonly certPem: string,
    /** SHA-256 fingerprint of the CA certificate (colon-separated hex, as node prints it). */
    readonly fingerprint256: string,
    private readonly caCert: x509.X509Certificate,
    private readonly caKey: CryptoKey,
  ) {}

  /** Loads the CA from <storageRoot>/internal, creating it when neither file exists. Throws TlsSetupError. */
  static async open(storageRoot: string, log: Logger = createLogger('tls')): Promise<InternalCa> {
    const paths = internalCaPaths(storageRoot);
    await ensureDir(paths.dir);
    const existing = await InternalCa.tryLoad(paths, log);
    if (existing) return existing;
    // Two processes starting on an empty folder must not make two CAs.
    const held = await lock(paths.lock, { timeoutMs: 30_000 });
    try {
      return (await InternalCa.tryLoad(paths, log)) ?? (await InternalCa.create(paths, log));
    } finally {
      await held.release();
    }
  }

  /** Issuer: a leaf for one host, valid 30 days from an hour ago. */
  issue(host: string): Promise<PemPair> {
    const now = Date.now();
    return this.mintLeaf(host, { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + LEAF_LIFETIME_MS) });
  }

  /** A leaf certificate for a host or '*.domain' with a fresh P-256 key and explicit validity. */
  async mintLeaf(name: string, validity: LeafValidity): Promise<PemPair> {
    if (!isCertName(name)) throw new Error(`invalid certificate name: ${JSON.stringify(name)}`);
    const keys = await crypto.subtle.generateKey(EC_ALGORITHM, true, ['sign', 'verify']);
    const caKeyId = this.caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    const leaf = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerial(),
        subject: [{ CN: [name] }],
        issuer: this.caCert.subjectName,
        notBefore: validity.notBefore,
        notAfter: validity.notAfter,
        publicKey: keys.publicKey,
        signingKey: this.caKey,
        signingAlgorithm: SIGNING,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }]),
          caKeyId ? new x509.AuthorityKeyIdentifierExtension(caKeyId) : await x509.AuthorityKeyIdentifierExtension.create(this.caCert, false, x509Crypto),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, x509Crypto),
        ],
      },
      x509Crypto,
    );
    const keyDer = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
    return { certPem: leaf.toString('pem') + '\n', keyPem: toPem(keyDer, 'PRIVATE KEY') };
  }

  private static async create(paths: InternalCaPaths, log: Logger): Promise<InternalCa> {
    const id = randomBytes(4).toString('hex');
    const now = Date.now();
    const keys = await crypto.subtle.generateKey(EC_ALGORITHM, true, ['sign', 'verify']);
    const cert = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: randomSerial(),
        name: [{ CN: [`aleph-edge internal CA ${id}`] }],
        notBefore: new Date(now - BACKDATE_MS),
        notAfter: new Date(now + CA_LIFETIME_MS),
        keys,
        signingAlgorithm: SIGNING,
        extensions: [
          // pathLength 0: this CA signs leaves only, never another CA.
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, x509Crypto),
        ],
      },
      x509Crypto,
    );
    const keyPem = toPem(await crypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
    const certPem = cert.toString('pem') + '\n';
    // Key first: a crash in between leaves ca.key alone, which open() reports rather than overwrites.
    await atomicWriteFile(paths.key, keyPem, 0o600);
    await atomicWriteFile(paths.cert, certPem, 0o644);
    const loaded = await InternalCa.tryLoad(paths, log);
    if (!loaded) throw new TlsSetupError(`internal CA vanished right after creation in ${paths.dir}`);
    log.info('internal CA created', { cert: paths.cert, subject: `aleph-edge internal CA ${id}` });
    return loaded;
  }

  /** The CA from disk, undefined when neither file exists; anything else wrong is a TlsSetupError. */
  private static async tryLoad(paths: InternalCaPaths, log: Logger): Promise<InternalCa | undefined> {
    const certPem = await readIfPresent(paths.cert);
    const keyPem = await readIfPresent(paths.key);
    if (certPem === undefined && keyPem === undefined) return undefined;
    const advice = 'refusing to replace the internal CA (clients trust it); restore the file, or remove both ca.crt and ca.key to create a new CA';
    if (certPem === undefined) throw new TlsSetupError(`internal CA certificate ${paths.cert} is missing but ${paths.key} exists: ${advice}`);
    if (keyPem === undefined) throw new TlsSetupError(`internal CA key ${paths.key} is missing but ${paths.cert} exists: ${advice}`);

    let cert: NodeCertificate;
    try {
      cert = new NodeCertificate(certPem);
    } catch (err) {
      throw new TlsSetupError(`internal CA certificate ${paths.cert} does not parse (${(err as Error).message}): ${advice}`);
    }
    let key: KeyObject;
    try {
      key = createPrivateKey(keyPem);
    } catch (err) {
      throw new TlsSetupError(`internal CA key ${paths.key} does not parse (${(err as Error).message}): ${advice}`);
    }
    if (!cert.checkPrivateKey(key)) throw new TlsSetupError(`internal CA key ${paths.key} does not match ${paths.cert}: ${advice}`);
    if (!cert.ca) throw new TlsSetupError(`internal CA certificate ${paths.cert} is not a CA certificate: ${advice}`);
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new TlsSetupError(`internal CA key ${paths.key} is not an ECDSA P-256 key: ${advice}`);
    }
    if (Date.parse(cert.validTo) <= Date.now()) throw new TlsSetupError(`internal CA certificate ${paths.cert} expired on ${cert.validTo}: ${advice}`);

    const keyMode = (await stat(paths.key)).mode & 0o777;
    if (keyMode & 0o077) log.warn('internal CA key is readable by other users', { path: paths.key, mode: keyMode.toString(8) });

    const caKey = await crypto.subtle.importKey('pkcs8', key.export({ type: 'pkcs8', format: 'der' }), EC_ALGORITHM, false, ['sign']);
    return new InternalCa(paths, certPem, cert.fingerprint256, new x509.X509Certificate(certPem), caKey);
  }
}

async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TlsSetupError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/** 128-bit positive serial with a non-zero first byte (minimal DER encoding). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) || 0x01;
  return bytes.toString('hex');
}

function toPem(der: ArrayBuffer, label: string): string {
  const body = Buffer.from(der).toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}
