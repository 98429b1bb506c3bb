// One ACME account per directory + email. The account key lives in the storage
// folder, <storage>/<issuer>/_accounts/<email>/{account.key,account.json}, key 0600,
// and is reused across restarts (and by every process sharing the folder: the first
// one creates it under a lock). EAB (kid + HMAC key) is sent when configured; the CA
// needs it only for the first registration of the key.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import { join } from 'node:path';
import { createSecureContext, rootCertificates } from 'node:tls';
import type acme from 'acme-client';
import { acmeLib } from './acme-lib.js';
import type { Logger } from '../common/index.js';
import { atomicWriteFile, ensureDir } from './atomic.js';
import { lock } from './lock.js';
import type { CertStorage } from './storage.js';

export interface AcmeAccountOptions {
  directory: string;
  email: string;
  eab: { kid: string; hmacKey: string } | null;
  storage: CertStorage;
  /** The issuer folder the account lives in. */
  issuerName: string;
  log: Logger;
  /** acme-client polling (waitForValidStatus): attempts and delays in ms. */
  backoff?: { attempts: number; minMs: number; maxMs: number };
}

interface AccountFile {
  directory: string;
  email: string;
  url: string;
}

// Polling of challenge and order status: 50 ms, doubling, capped at 5 s; about 70 s in all.
const DEFAULT_BACKOFF = { attempts: 20, minMs: 50, maxMs: 5_000 };

/** A stable, path-safe folder name for an email address. */
function accountFolder(email: string): string {
  const slug = email.toLowerCase().replace(/[^a-z0-9@._-]/g, '_').replace(/@/g, '_at_').slice(0, 80);
  const digest = createHash('sha256').update(email.toLowerCase()).digest('hex').slice(0, 8);
  return `${slug || 'anonymous'}-${digest}`;
}

/** The storage folder name for an ACME directory: 'acme-' + host (+ '-port' when not 443). */
export function issuerNameFor(directory: string): string {
  const url = new URL(directory);
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase().replace(/[^a-z0-9.-]/g, '-');
  return `acme-${host}${url.port && url.port !== '443' ? `-${url.port}` : ''}`;
}

const extraCas = new Set<string>();

/**
 * Trusts an extra CA bundle (tls.directory_ca, e.g. Pebble's API certificate) for ACME
 * requests, on top of the system roots. acme-client has one axios instance per process.
 * The trust store is parsed once into one secure context: given as `ca`, every new
 * connection re-parsed the ~150 roots (15-25 ms of the primary's CPU each; a burst of
 * 40 orders spent 3 s of its 8 s there).
 */
export async function trustDirectoryCa(path: string): Promise<void> {
  if (!path) return;
  extraCas.add(await readFile(path, 'utf8'));
  const lib = await acmeLib();
  const secureContext = createSecureContext({ ca: [...rootCertificates, ...extraCas] });
  lib.axios.defaults.httpsAgent = new https.Agent({ secureContext, keepAlive: true });
}

let noncesByGet = false;

/**
 * Once per process: acme-client's nonce requests go out as GET (RFC 8555 7.2: the
 * server answers GET on newNonce too, 204 with the nonce). Its HEAD answer carries no
 * Content-Length (Pebble, and Go servers in general), after which Node closes the
 * kept-alive connection: every signed request then opened a new TLS connection to
 * the CA (300 for 40 orders).
 */
export async function fetchNoncesByGet(): Promise<void> {
  if (noncesByGet) return;
  noncesByGet = true;
  const lib = await acmeLib();
  lib.axios.interceptors.request.use((config) => {
    if (config.method?.toLowerCase() === 'head') config.method = 'get';
    return config;
  });
}

/** acme-client's retry of failed requests (network errors, 5xx, 429); process-wide. */
export async function setAcmeHttpRetry(attempts: number, delaySeconds: number): Promise<void> {
  const defaults = (await acmeLib()).axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number; retryDefaultDelay: number } };
  defaults.acmeSettings.retryMaxAttempts = attempts;
  defaults.acmeSettings.retryDefaultDelay = delaySeconds;
}

/** Loads (or creates and registers) the account; returns a client bound to it. */
export async function openAccount(options: AcmeAccountOptions): Promise<acme.Client> {
  const { storage, issuerName, email, directory, log } = options;
  const dir = join(storage.issuerDir(issuerName), '_accounts', accountFolder(email));
  await ensureDir(dir);
  const keyPath = join(dir, 'account.key');
  const infoPath = join(dir, 'account.json');
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  await fetchNoncesByGet();
  const lib = await acmeLib();
  const held = await lock(join(dir, '.lock'), { timeoutMs: 60_000 });
  try {
    let key = await readFile(keyPath, 'utf8').catch(() => undefined);
    if (!key) {
      key = (await lib.crypto.createPrivateEcdsaKey('P-256')).toString();
      await atomicWriteFile(keyPath, key, 0o600);
      log.info('acme account key created', { path: keyPath });
    }
    const info = await readFile(infoPath, 'utf8').then((text) => JSON.parse(text) as AccountFile).catch(() => undefined);
    const clientOptions: acme.ClientOptions = {
      directoryUrl: directory,
      accountKey: key,
      backoffAttempts: backoff.attempts,
      backoffMin: backoff.minMs,
      backoffMax: backoff.maxMs,
    };
    if (info?.url && info.directory === directory) clientOptions.accountUrl = info.url;
    if (options.eab) clientOptions.externalAccountBinding = { kid: options.eab.kid, hmacKey: options.eab.hmacKey };
    const client = new lib.Client(clientOptions);
    if (!clientOptions.accountUrl) {
      // Registering an existing key returns the same account, so this is safe to repeat.
      await client.createAccount({ termsOfServiceAgreed: true, contact: email ? [`mailto:${email}`] : [] });
      const url = client.getAccountUrl();
      await atomicWriteFile(infoPath, JSON.stringify({ directory, email, url } satisfies AccountFile, null, 2) + '\n', 0o600);
      log.info('acme account registered', { directory, email, url, eab: options.eab ? 'yes' : 'no' });
    }
    return client;
  } finally {
    await held.release();
  }
}
