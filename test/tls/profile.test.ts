// Issue 14 case 6: the TLS profile, checked with openssl s_client against a real
// node: Mozilla "intermediate" (TLS 1.2 ECDHE + AEAD only, TLS 1.3 without CCM),
// key exchange groups, a handshake without SNI, and Strict-Transport-Security.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { example } from '../helpers/paths.js';
import { hashToLabel } from '../../src/common/index.js';
import { programHash, request, startTestNode, type TestNode } from '../helpers/node.js';

// The node runs in this process: the client must not block the event loop (no spawnSync).
async function sClient(node: TestNode, args: string[]): Promise<{ ok: boolean; out: string }> {
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${node.httpsPort}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c; });
  child.stderr.setEncoding('utf8').on('data', (c: string) => { out += c; });
  const status = await new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  // A negotiated session names its cipher; a refused one says "(NONE)" or fails outright.
  const cipher = /Cipher is (\S+)/.exec(out)?.[1];
  return { ok: status === 0 && cipher !== undefined && cipher !== '(NONE)', out };
}

describe('TLS profile', () => {
  let node: TestNode;

  before(async () => {
    node = await startTestNode({
      programs: [{ name: 'echo', script: example('echo') }],
      serverKeys: ['hsts = "max-age=600; includeSubDomains"'],
    });
  });

  after(async () => {
    await node.close();
  });

  const refused12 = [
    'ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA384',
    'ECDHE-RSA-AES128-SHA', 'AES256-SHA', 'AES128-GCM-SHA256', 'AES256-GCM-SHA384', 'AES256-SHA256',
    'ECDHE-ECDSA-AES128-CCM8', 'ECDHE-ECDSA-AES256-CCM8', 'ECDHE-ECDSA-AES128-CCM', 'AES128-CCM8',
    'ECDHE-ECDSA-ARIA128-GCM-SHA256', 'ECDHE-ECDSA-ARIA256-GCM-SHA384', 'ECDHE-ECDSA-CAMELLIA128-SHA256',
    'DHE-RSA-AES128-GCM-SHA256', 'DHE-RSA-AES256-SHA',
  ];

  it('TLS 1.2 negotiates ECDHE with AEAD', async () => {
    for (const suite of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
      const r = await sClient(node, ['-servername', node.domain, '-tls1_2', '-cipher', suite]);
      assert.ok(r.ok, `${suite} should negotiate:\n${r.out}`);
      assert.match(r.out, new RegExp(`Cipher is ${suite}`));
    }
  });

  it('TLS 1.2 refuses CBC, CCM, CCM8, ARIA, Camellia, static RSA and DHE suites', async () => {
    for (const suite of refused12) {
      const r = await sClient(node, ['-servername', node.domain, '-tls1_2', '-cipher', suite]);
      assert.equal(r.ok, false, `${suite} negotiated:\n${r.out}`);
    }
  });

  it('TLS 1.3 offers the GCM and ChaCha20 suites, not CCM; TLS 1.1 is refused', async () => {
    assert.ok((await sClient(node, ['-servername', node.domain, '-tls1_3', '-ciphersuites', 'TLS_AES_256_GCM_SHA384'])).ok);
    assert.ok((await sClient(node, ['-servername', node.domain, '-tls1_3', '-ciphersuites', 'TLS_CHACHA20_POLY1305_SHA256'])).ok);
    for (const suite of ['TLS_AES_128_CCM_SHA256', 'TLS_AES_128_CCM_8_SHA256']) {
      assert.equal((await sClient(node, ['-servername', node.domain, '-tls1_3', '-ciphersuites', suite])).ok, false, suite);
    }
    assert.equal((await sClient(node, ['-servername', node.domain, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'])).ok, false);
  });

  it('key exchange: X25519MLKEM768 where OpenSSL offers it, X25519 and P-256; P-384 alone is refused', async () => {
    const groupOf = (curve: string) => new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, ecdhCurve: curve });
      socket.once('secureConnect', () => {
        resolve(socket.getEphemeralKeyInfo() && (socket.getEphemeralKeyInfo() as { name?: string }).name || '');
        socket.destroy();
      });
      socket.once('error', reject);
    });
    const [major, minor] = process.versions.openssl.split('.').map(Number) as [number, number];
    if (major > 3 || (major === 3 && minor >= 5)) assert.equal(await groupOf('X25519MLKEM768'), 'X25519MLKEM768');
    assert.equal(await groupOf('X25519'), 'X25519');
    assert.equal(await groupOf('P-256'), 'prime256v1');
    await assert.rejects(groupOf('P-384'));
  });

  it('a handshake without SNI succeeds with the node domain\'s certificate', async () => {
    // The default certificate is installed right after the listeners start.
    let r = await sClient(node, ['-noservername']);
    for (let i = 0; i < 40 && !r.ok; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      r = await sClient(node, ['-noservername']);
    }
    assert.ok(r.ok, r.out);
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.out)![0];
    assert.ok(new X509Certificate(pem).checkHost(node.domain), 'the certificate names the node domain');
  });

  it('Strict-Transport-Security on the node domain (pages, /vm/ paths, errors), not on program hosts', async () => {
    const hash = programHash('echo');
    for (const path of ['/', '/about', `/vm/${hash}/`, '/vm/not-a-hash/']) {
      const reply = await request(node, { host: node.domain, path });
      assert.equal(reply.headers['strict-transport-security'], 'max-age=600; includeSubDomains', path);
    }
    const programHost = `${hashToLabel(hash)}.${node.domain}`;
    const reply = await request(node, { host: programHost, path: '/' });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['strict-transport-security'], undefined);
  });
});
