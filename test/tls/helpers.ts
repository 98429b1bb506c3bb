// Shared pieces of the tls/ tests: temp folders, settings, policies, a real TLS
// server whose SNICallback asks the manager, and a client handshake.

import { X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { setLogLevel } from '../../src/common/log.js';
import type { TlsSettings } from '../../src/config/types.js';
import type { CertificateResolver, IssuancePolicy } from '../../src/tls/types.js';
import type { Issuer } from '../../src/tls/issuer.js';
import type { PemPair } from '../../src/tls/pair.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

export async function tempDir(prefix = 'aleph-edge-tls-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function tlsSettings(overrides: Partial<TlsSettings> = {}): TlsSettings {
  return {
    mode: 'internal',
    storage: '/nonexistent',
    email: '',
    directory: '',
    directoryCa: '',
    challenges: ['tls-alpn-01', 'http-01'],
    onDemand: true,
    ask: '',
    issueRate: { burst: 5, intervalMs: 60_000 },
    wildcard: { enabled: false, dnsHook: '' },
    files: [],
    cacheSize: 100,
    eab: null,
    ...overrides,
  };
}

/** A policy that records what it was asked and answers from a predicate. */
export function policy(allow: (host: string) => boolean = () => true): IssuancePolicy & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async allow(host) {
      asked.push(host);
      return allow(host);
    },
  };
}

/** An issuer that counts calls and delegates to a real one (same name, so same storage folder). */
export function spyIssuer(inner: Issuer): Issuer & { calls: string[] } {
  const calls: string[] = [];
  return {
    name: inner.name,
    calls,
    issue(host: string): Promise<PemPair> {
      calls.push(host);
      return inner.issue(host);
    },
  };
}

export interface TestServer {
  port: number;
  /** Server names the SNICallback received. */
  seen: string[];
  close(): Promise<void>;
}

const openServers = new Set<TestServer>();

/** Closes every server a test left open (a failed assertion skips its close()). */
export async function closeAllServers(): Promise<void> {
  await Promise.all([...openServers].map((s) => s.close()));
}

/** A real TLS server on 127.0.0.1 with no default certificate: every cert comes from the resolver. */
export async function startTlsServer(resolver: CertificateResolver): Promise<TestServer> {
  const seen: string[] = [];
  const server = tls.createServer({
    SNICallback: (servername, callback) => {
      seen.push(servername);
      resolver.secureContext(servername).then(
        (context) => callback(null, context),
        (err: Error) => callback(err),
      );
    },
  });
  const sockets = new Set<tls.TLSSocket>();
  server.on('secureConnection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.end('hello\n');
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let closing: Promise<void> | undefined;
  const handle: TestServer = {
    port: (server.address() as AddressInfo).port,
    seen,
    close() {
      openServers.delete(handle);
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
  openServers.add(handle);
  return handle;
}

export interface HandshakeResult {
  authorized: boolean;
  authorizationError: string | undefined;
  subjectaltname: string | undefined;
  keyType: string | undefined;
  curve: string | undefined;
  fingerprint256: string;
}

/** One client handshake; rejects when the handshake fails. The caller asserts `authorized`. */
export function handshake(port: number, servername: string, ca: string | undefined): Promise<HandshakeResult> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ca, rejectUnauthorized: false });
    socket.setTimeout(10_000, () => socket.destroy(new Error('handshake timed out')));
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const peer = socket.getPeerCertificate(false);
      const parsed = new X509Certificate(peer.raw);
      resolve({
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined,
        subjectaltname: peer.subjectaltname,
        keyType: parsed.publicKey.asymmetricKeyType,
        curve: parsed.publicKey.asymmetricKeyDetails?.namedCurve,
        fingerprint256: peer.fingerprint256,
      });
      socket.destroy();
    });
  });
}

/** Every file path under dir, relative, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (sub: string): Promise<void> => {
    for (const entry of await readdir(path.join(dir, sub), { withFileTypes: true })) {
      const rel = path.join(sub, entry.name);
      if (entry.isDirectory()) await walk(rel);
      else out.push(rel);
    }
  };
  await walk('');
  return out.sort();
}
