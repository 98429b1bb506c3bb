// Certificates on disk: <root>/<issuer>/<host>/{cert.pem,key.pem,meta.json}, a
// wildcard '*.example.org' stored as '_wildcard.example.org'. Nothing is read at
// startup; load() reads one host when a handshake needs it, so a folder with 10,000
// certificates costs nothing until they are used. Files are written atomically
// (atomic.ts), key first, so a crash leaves at worst a cert/key mismatch, which
// load() refuses like any other broken pair.

import { readFile, readdir } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { createLogger, type Logger } from '../common/index.js';
import { atomicWriteFile, ensureDir, removeStaleTemps } from './atomic.js';
import { isCertName } from './hostname.js';
import { lock, type FileLock, type LockOptions } from './lock.js';
import { PairError, covers, parsePair, type ParsedPair, type PemPair } from './pair.js';
import type { CertInfo } from './types.js';

export const CERT_FILE = 'cert.pem';
export const KEY_FILE = 'key.pem';
export const META_FILE = 'meta.json';
const LOCK_FILE = '.lock';
const WILDCARD_PREFIX = '_wildcard.';
const ISSUER_NAME = /^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$/;
// Files kept next to host folders in an issuer folder (the internal CA's); a host
// folder of the same name would collide with them.
const RESERVED_HOSTS = new Set(['ca.crt', 'ca.key', 'ca.lock']);
const STALE_TEMP_MS = 60 * 60_000;
const LIST_BATCH = 64;

/** What meta.json holds; enough for the status API without parsing certificates. */
export interface CertMeta {
  host: string;
  issuer: string;
  source: CertInfo['source'];
  notBefore: string;
  notAfter: string;
  issuerName: string;
  fingerprint256: string;
  /** Set in meta.json when written; absent on a pair read back by load(). */
  storedAt?: string;
}

export interface StoredCert {
  meta: CertMeta;
  pair: ParsedPair;
}

export class InvalidNameError extends Error {
  override readonly name = 'InvalidNameError';
}

/** The status-API source for a storage issuer folder. */
export function sourceForIssuer(issuer: string): CertInfo['source'] {
  return issuer === 'internal' ? 'internal' : 'acme';
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export class CertStorage {
  readonly root: string;
  /** Settles with the count of leftover temp files removed after open(). */
  leftoversRemoved: Promise<number> = Promise.resolve(0);
  private readonly log: Logger;

  constructor(root: string, log: Logger = createLogger('tls')) {
    this.root = resolve(root);
    this.log = log;
  }

  /**
   * Creates the root folder (0700) if needed, and starts removing the temp files
   * left by interrupted writes (in the background: 10,000 host folders take about a
   * second to walk on a busy machine; `leftoversRemoved` settles when it is done).
   */
  static async open(root: string, log?: Logger): Promise<CertStorage> {
    const storage = new CertStorage(root, log);
    await ensureDir(storage.root);
    const started = performance.now();
    storage.leftoversRemoved = storage.removeLeftoverTemps().then((removed) => {
      if (removed > 0) storage.log.info('removed temp files left by interrupted writes', { count: removed, ms: Math.round(performance.now() - started) });
      return removed;
    }, (err: Error) => {
      storage.log.warn('could not remove temp files left by interrupted writes', { error: err.message });
      return 0;
    });
    return storage;
  }

  /**
   * Removes our temp files whose writer is gone from every folder we write to:
   * the root, issuer folders, host folders and account folders (three levels).
   * Symlinks are not followed. Returns how many were removed.
   */
  async removeLeftoverTemps(): Promise<number> {
    let removed = 0;
    let level = [this.root];
    for (let depth = 0; depth <= 3 && level.length > 0; depth++) {
      const next: string[] = [];
      for (let i = 0; i < level.length; i += LIST_BATCH) {
        await Promise.all(level.slice(i, i + LIST_BATCH).map(async (dir) => {
          const entries = await readdirOrEmpty(dir);
          const files = entries.filter((e) => e.isFile()).map((e) => e.name);
          // Not `removed += await ...`: that reads `removed` before the await, losing concurrent counts.
          const count = await removeStaleTemps(dir, STALE_TEMP_MS, { names: files });
          removed += count;
          if (depth < 3) for (const entry of entries) if (entry.isDirectory()) next.push(join(dir, entry.name));
        }));
      }
      level = next;
    }
    return removed;
  }

  /** Folder of one issuer ('internal', an ACME directory id). Throws InvalidNameError. */
  issuerDir(issuer: string): string {
    if (!ISSUER_NAME.test(issuer) || issuer.includes('..')) throw new InvalidNameError(`invalid issuer name: ${JSON.stringify(issuer)}`);
    return join(this.root, issuer);
  }

  /** True when a certificate for this name can be stored (valid, lowercase, not a reserved file name). */
  accepts(host: string): boolean {
    return isCertName(host) && !RESERVED_HOSTS.has(host);
  }

  /** Folder of one host; the name is validated strictly since it becomes a path. Throws InvalidNameError. */
  hostDir(issuer: string, host: string): string {
    if (!this.accepts(host)) {
      throw new InvalidNameError(`invalid certificate name: ${JSON.stringify(host)}`);
    }
    const folder = host.startsWith('*.') ? WILDCARD_PREFIX + host.slice(2) : host;
    const dir = join(this.issuerDir(issuer), folder);
    // Belt and braces: validation above already excludes separators and dot segments.
    if (!dir.startsWith(this.root + sep)) throw new InvalidNameError(`certificate name escapes storage: ${JSON.stringify(host)}`);
    return dir;
  }

  /**
   * The stored pair for a host, or undefined when there is none or it cannot be
   * served (missing half, parse failure, key mismatch, wrong names: logged).
   */
  async load(issuer: string, host: string): Promise<StoredCert | undefined> {
    const dir = this.hostDir(issuer, host);
    const certPath = join(dir, CERT_FILE);
    const [certPem, keyPem] = await Promise.all([readOptional(certPath), readOptional(join(dir, KEY_FILE))]);
    if (certPem === undefined && keyPem === undefined) return undefined;
    if (typeof certPem !== 'string' || typeof keyPem !== 'string') {
      const reason = describeMissing(certPem, CERT_FILE) ?? describeMissing(keyPem, KEY_FILE);
      this.log.warn('stored certificate ignored', { host, issuer, path: dir, reason });
      return undefined;
    }
    try {
      const pair = parsePair({ certPem, keyPem });
      if (!covers(pair, host)) throw new PairError(`certificate does not name ${host}`);
      return { pair, meta: this.metaFor(issuer, host, pair) };
    } catch (err) {
      this.log.warn('stored certificate ignored', { host, issuer, path: certPath, reason: (err as Error).message });
      return undefined;
    }
  }

  /** Checks and writes a pair (key, cert, meta; each atomically). Throws PairError or InvalidNameError. */
  async save(issuer: string, host: string, pem: PemPair): Promise<StoredCert> {
    const dir = this.hostDir(issuer, host);
    const pair = parsePair(pem);
    if (!covers(pair, host)) throw new PairError(`certificate does not name ${host}`);
    await ensureDir(dir);
    await removeStaleTemps(dir, STALE_TEMP_MS);
    const meta = { ...this.metaFor(issuer, host, pair), storedAt: new Date().toISOString() };
    await atomicWriteFile(join(dir, KEY_FILE), pem.keyPem, 0o600);
    await atomicWriteFile(join(dir, CERT_FILE), pem.certPem, 0o644);
    await atomicWriteFile(join(dir, META_FILE), JSON.stringify(meta, null, 2) + '\n', 0o644);
    return { pair, meta };
  }

  /** Metadata of every stored certificate, from meta.json only (no certificate parsing). */
  async list(): Promise<CertMeta[]> {
    const dirs: Array<{ issuer: string; dir: string }> = [];
    for (const issuer of await readdirOrEmpty(this.root)) {
      if (!issuer.isDirectory() || !ISSUER_NAME.test(issuer.name)) continue;
      for (const host of await readdirOrEmpty(join(this.root, issuer.name))) {
        if (host.isDirectory()) dirs.push({ issuer: issuer.name, dir: join(this.root, issuer.name, host.name) });
      }
    }
    const out: CertMeta[] = [];
    for (let i = 0; i < dirs.length; i += LIST_BATCH) {
      const metas = await Promise.all(dirs.slice(i, i + LIST_BATCH).map(({ dir }) => readMeta(join(dir, META_FILE))));
      for (const meta of metas) if (meta) out.push(meta);
    }
    return out;
  }

  /** Per-host lock file so two processes sharing this folder do not issue the same certificate twice. */
  async lock(issuer: string, host: string, options?: LockOptions): Promise<FileLock> {
    const dir = this.hostDir(issuer, host);
    await ensureDir(dir);
    return lock(join(dir, LOCK_FILE), options);
  }

  private metaFor(issuer: string, host: string, pair: ParsedPair): CertMeta {
    return {
      host,
      issuer,
      source: sourceForIssuer(issuer),
      notBefore: pair.notBefore.toISOString(),
      notAfter: pair.notAfter.toISOString(),
      issuerName: pair.issuerName,
      fingerprint256: pair.fingerprint256,
    };
  }
}

/** File text, undefined when absent, the error for anything else (ENOTDIR, EACCES...). */
async function readOptional(path: string): Promise<string | undefined | Error> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    return errorCode(err) === 'ENOENT' ? undefined : (err as Error);
  }
}

function describeMissing(value: string | undefined | Error, file: string): string | undefined {
  if (value instanceof Error) return `${file}: ${value.message}`;
  return value === undefined ? `${file} missing` : undefined;
}

async function readdirOrEmpty(path: string) {
  try {
    return await readdir(path, { withFileTypes: true });
  } catch {
    return [];
  }
}

async function readMeta(path: string): Promise<CertMeta | undefined> {
  try {
    const meta = JSON.parse(await readFile(path, 'utf8')) as Partial<CertMeta>;
    if (typeof meta.host !== 'string' || typeof meta.notAfter !== 'string' || typeof meta.issuer !== 'string') return undefined;
    return meta as CertMeta;
  } catch {
    return undefined;
  }
}
