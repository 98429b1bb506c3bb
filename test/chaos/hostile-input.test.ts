// Hostile requests against a running node (the CLI in a child process). Pass
// condition for each: a 4xx or a closed connection, the node still serving, and
// the recorder program (which logs every request it receives) never reached.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { hashToLabel } from '../../src/common/hash.js';
import { CLI, fixtureProgram } from '../helpers/paths.js';
import { programHash } from '../helpers/node.js';
import { childrenOf, get, processesMatching, rawTls, startCliNode, statuses, type CliNode } from './harness.js';

const H = programHash('recorder');
const MAX_BODY = 64 * 1024;

interface Received { method: string; url: string; headers: Record<string, string>; rawHeaders: string[]; body_bytes: number; complete: boolean }

// workers = 1: one process; workers = 2: the production shape (workers parse and proxy).
for (const workers of [1, 2]) describe(`hostile input (workers = ${workers})`, () => {
  let node: CliNode;
  let recordFile: string;
  let workerPids: number[] = [];
  const currentWorkers = () => childrenOf(node.child.pid!).filter((pid) => processesMatching(CLI).includes(pid)).sort();

  async function received(): Promise<Received[]> {
    try {
      // Requests without our X-Forwarded-For are the node's readiness probes.
      return (await readFile(recordFile, 'utf8')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Received)
        .filter((r) => r.headers['x-forwarded-for'] !== undefined);
    } catch {
      return [];
    }
  }

  /** Sends `payload`, checks 4xx-or-closed and that no request reached the program. */
  async function rejected(name: string, payload: string, options: { servername?: string } = {}): Promise<string> {
    const before = (await received()).length;
    const reply = await rawTls(node, payload, { idleMs: 1500, ...options });
    const codes = statuses(reply.text);
    const outcome = codes.length ? codes.join(',') : reply.closed ? 'closed' : 'no answer';
    assert.ok(codes.every((c) => c >= 400 && c < 500), `${name}: got ${outcome}`);
    assert.ok(codes.length > 0 || reply.closed, `${name}: neither an answer nor a close`);
    const reached = (await received()).slice(before);
    assert.deepEqual(reached.map((r) => r.url), [], `${name}: reached the program`);
    assert.equal(node.child.exitCode, null, `${name}: the node exited`);
    return `${name}=${outcome}`;
  }

  before(async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-'));
    recordFile = path.join(dir, 'requests.jsonl');
    node = await startCliNode({
      dir, workers,
      programs: [{ name: 'recorder', script: fixtureProgram('chaos-recorder.js'), env: { RECORD_FILE: recordFile } }],
      server: ['[server.limits]', `max_body_bytes = ${MAX_BODY}`, 'max_header_bytes = "8KiB"'],
    });
    // Control: an ordinary request reaches the program once.
    const ok = await get(node, `/vm/${H}/control`);
    assert.equal(ok.status, 200);
    assert.deepEqual((await received()).map((r) => r.url), ['/control']);
    workerPids = currentWorkers();
    assert.equal(workerPids.length, workers === 1 ? 0 : workers);
  });

  after(async () => {
    const code = await node.stop();
    await rm(node.dir, { recursive: true, force: true });
    assert.equal(code, 0);
  });

  it('request smuggling: CL+TE, TE+CL, duplicate CL, obs-fold, TE obfuscations', async () => {
    const inner = `GET /vm/${H}/smuggled HTTP/1.1\r\nHost: edge.test\r\n\r\n`;
    const head = (extra: string) => `POST /vm/${H}/outer HTTP/1.1\r\nHost: edge.test\r\n${extra}\r\n`;
    const cases: Array<[string, string]> = [
      ['cl-te', head(`Content-Length: ${5 + inner.length}\r\nTransfer-Encoding: chunked\r\n`) + `0\r\n\r\n${inner}`],
      ['te-cl', head(`Transfer-Encoding: chunked\r\nContent-Length: 4\r\n`) + `5c\r\n${inner}\r\n0\r\n\r\n`],
      ['duplicate-cl', head(`Content-Length: 0\r\nContent-Length: ${inner.length}\r\n`) + inner],
      ['duplicate-cl-same', head(`Content-Length: ${inner.length}\r\nContent-Length: ${inner.length}\r\n`) + inner],
      ['cl-list', head(`Content-Length: ${inner.length}, 0\r\n`) + inner],
      ['obs-fold-te', head(`X-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: ${inner.length}\r\n`) + inner],
      ['obs-fold-plain', `GET /vm/${H}/fold HTTP/1.1\r\nHost: edge.test\r\nX-Folded: a\r\n  b\r\n\r\n`],
      ['te-space-before-colon', head(`Transfer-Encoding : chunked\r\nContent-Length: ${inner.length}\r\n`) + inner],
      ['te-xchunked', head(`Transfer-Encoding: xchunked\r\nContent-Length: ${inner.length}\r\n`) + inner],
      ['te-chunked-identity', head(`Transfer-Encoding: chunked, identity\r\n`) + `0\r\n\r\n${inner}`],
      ['te-twice', head(`Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: ${inner.length}\r\n`) + inner],
      ['chunk-size-overflow', head(`Transfer-Encoding: chunked\r\n`) + `fffffffffffffffff1\r\nx\r\n0\r\n\r\n`],
      ['chunk-ext-garbage', head(`Transfer-Encoding: chunked\r\n`) + `5;\x00\r\nhello\r\n0\r\n\r\n`],
      ['bare-lf', `GET /vm/${H}/lf HTTP/1.1\nHost: edge.test\n\n`],
      ['nul-in-header', `GET /vm/${H}/nul HTTP/1.1\r\nHost: edge.test\r\nX-A: a\x00b\r\n\r\n`],
      ['bad-version', `GET /vm/${H}/v HTTP/1.7\r\nHost: edge.test\r\n\r\n`],
    ];
    const figures: string[] = [];
    for (const [name, payload] of cases) figures.push(await rejected(name, payload));
    process.stdout.write(`# smuggling: ${figures.join(' ')}\n`);
  });

  it('oversized headers and bodies (max_header_bytes 8 KiB, max_body_bytes 64 KiB)', async () => {
    const figures: string[] = [];
    figures.push(await rejected('one-20KiB-header', `GET /vm/${H}/big HTTP/1.1\r\nHost: edge.test\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`));
    figures.push(await rejected('3000-headers', `GET /vm/${H}/many HTTP/1.1\r\nHost: edge.test\r\n${Array.from({ length: 3000 }, (_, i) => `X-${i}: v\r\n`).join('')}\r\n`));
    figures.push(await rejected('long-url-16KiB', `GET /vm/${H}/${'u'.repeat(16_000)} HTTP/1.1\r\nHost: edge.test\r\n\r\n`));
    figures.push(await rejected('content-length-over-limit', `POST /vm/${H}/body HTTP/1.1\r\nHost: edge.test\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n${'b'.repeat(1000)}`));
    figures.push(await rejected('content-length-huge', `POST /vm/${H}/body HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 99999999999999999999\r\n\r\n`));
    // Chunked: the size is unknown up front; the node must cut it at the limit, so the
    // program never receives a complete oversized body.
    const before = (await received()).length;
    const chunk = 'c'.repeat(8192);
    const chunks = Array.from({ length: 12 }, () => `2000\r\n${chunk}\r\n`).join('');
    const reply = await rawTls(node, `POST /vm/${H}/chunked HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}0\r\n\r\n`, { idleMs: 1500 });
    const codes = statuses(reply.text);
    await new Promise((r) => setTimeout(r, 200));
    const complete = (await received()).slice(before).filter((r) => r.complete);
    figures.push(`chunked-96KiB=${codes.join(',') || (reply.closed ? 'closed' : 'no answer')} (program got ${complete.length} complete)`);
    assert.deepEqual(complete.map((r) => r.body_bytes), [], 'an oversized chunked body reached the program complete');
    assert.ok(codes.every((c) => c === 413), `chunked over limit: ${codes.join(',')}`);
    // Control: a body at the limit goes through.
    const atLimit = await get(node, `/vm/${H}/at-limit`, { method: 'POST', body: 'x'.repeat(MAX_BODY) });
    assert.equal(atLimit.status, 200);
    assert.equal((JSON.parse(atLimit.body) as Received).body_bytes, MAX_BODY);
    // Control: a chunked body under the limit streams through whole.
    const small = Array.from({ length: 4 }, () => `2000\r\n${chunk}\r\n`).join('');
    const under = await rawTls(node, `POST /vm/${H}/chunked-under HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${small}0\r\n\r\n`, { idleMs: 3000 });
    assert.deepEqual(statuses(under.text), [200]);
    assert.equal((await received()).at(-1)!.body_bytes, 4 * 8192);
    process.stdout.write(`# oversized: ${figures.join(' ')} at-limit=200 chunked-32KiB=200\n`);
  });

  it('invalid Host headers', async () => {
    const req = (hostLines: string) => `GET /vm/${H}/host HTTP/1.1\r\n${hostLines}\r\n`;
    const cases: Array<[string, string]> = [
      ['missing', req('')],
      ['empty', req('Host: \r\n')],
      ['two-hosts', req('Host: edge.test\r\nHost: other.test\r\n')],
      ['bad-port', req('Host: edge.test:99999\r\n')],
      ['alpha-port', req('Host: edge.test:http\r\n')],
      ['space', req('Host: ed ge.test\r\n')],
      ['slash', req('Host: edge.test/vm\r\n')],
      ['userinfo', req('Host: user@edge.test\r\n')],
      ['unclosed-ipv6', req('Host: [::1\r\n')],
      ['dots', req('Host: ..\r\n')],
      ['label-too-long', req(`Host: ${'a'.repeat(64)}.edge.test\r\n`)],
      ['name-too-long', req(`Host: ${Array.from({ length: 60 }, () => 'abcd').join('.')}.test\r\n`)],
      ['non-ascii', req('Host: \xe9dge.test\r\n')],
      ['percent', req('Host: edge%2etest\r\n')],
      ['backslash', req('Host: edge.test\\@evil\r\n')],
      ['bad-base32-label', req(`Host: ${'1'.repeat(52)}.edge.test\r\n`)],
      ['absolute-form-other-host', `GET https://other.test/vm/${H}/x HTTP/1.1\r\nHost: edge.test\r\n\r\n`],
      ['unknown-host', req('Host: nobody.example\r\n')],
    ];
    const figures: string[] = [];
    for (const [name, payload] of cases) figures.push(await rejected(name, payload));
    process.stdout.write(`# invalid host: ${figures.join(' ')}\n`);
  });

  it('path traversal in /vm/<hash>/../.. and on base32 hosts', async () => {
    const targets = [
      `/vm/${H}/../../etc/passwd`, `/vm/${H}/..`, `/vm/${H}/%2e%2e/%2e%2e/etc/passwd`, `/vm/${H}/.%2E/x`,
      `/vm/${H}/..%2f..%2fetc`, `/vm/${H}/..%5c..%5cetc`, `/vm/${H}/..\\..\\etc`, `/vm/../vm/${H}/x`,
      `/vm/${H}/..;/x`, `/vm/${H}/a/../../${programHash('other')}/`, `/vm/${H.toUpperCase().replace(/./, 'G')}/x`,
      `/vm/${H}%2f..%2f/x`, `//vm/${H}/../x`,
    ];
    const figures: string[] = [];
    for (const target of targets) {
      figures.push(await rejected(target.replace(H, '<h>').replace(programHash('other'), '<other>'), `GET ${target} HTTP/1.1\r\nHost: edge.test\r\n\r\n`));
    }
    const label = `${hashToLabel(H)}.edge.test`;
    for (const target of ['/../x', '/a/%2e%2e/%2E%2E/x', '/..%2f..%2fx']) {
      figures.push(await rejected(`<base32>${target}`, `GET ${target} HTTP/1.1\r\nHost: ${label}\r\n\r\n`, { servername: label }));
    }
    // Control: the base32 host itself reaches the program.
    assert.equal((await get(node, '/via-label', { host: label })).status, 200);
    process.stdout.write(`# traversal: ${figures.join(' ')}\n`);
  });

  it('invalid SNI: unknown, malformed -> handshake refused; missing -> the domain\'s certificate, an unknown Host 4xx; node unharmed', async () => {
    const handshake = (servername: string | undefined) => new Promise<string>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: node.httpsPort, ca: node.ca, ...(servername === undefined ? {} : { servername }), rejectUnauthorized: false });
      const timer = setTimeout(() => { socket.destroy(); resolve('timeout'); }, 5000);
      socket.once('secureConnect', () => {
        // Without SNI the handshake completes (the node domain's certificate); a Host
        // that routes nowhere must still be refused.
        socket.write(`GET /vm/${H}/sni HTTP/1.1\r\nHost: ${servername || 'unknown.example'}\r\nConnection: close\r\n\r\n`);
        let text = '';
        socket.setEncoding('latin1');
        socket.on('data', (c: string) => (text += c));
        socket.once('close', () => { clearTimeout(timer); resolve(`handshake ok, ${statuses(text).join(',') || 'closed'}`); });
      });
      socket.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(`refused (${e.code ?? e.message})`); });
    });
    const before = (await received()).length;
    const figures: string[] = [];
    for (const name of [undefined, 'unknown.example', 'a_b..c', 'x'.repeat(250), '-.edge.test', `${'a'.repeat(64)}.edge.test`]) {
      const outcome = await handshake(name);
      figures.push(`${name === undefined ? '(none)' : name.length > 40 ? `${name.slice(0, 8)}…(${name.length})` : name}=${outcome}`);
      assert.ok(/^refused|handshake ok, (4\d\d|closed)$/.test(outcome), `${name}: ${outcome}`);
      if (name === undefined) assert.match(outcome, /^handshake ok, 4\d\d$/);
    }
    assert.deepEqual((await received()).slice(before), []);
    assert.equal(node.child.exitCode, null);
    process.stdout.write(`# sni: ${figures.join(' ')}\n`);
  });

  it('forged X-Forwarded-*, Forwarded, X-Real-IP and the client-IP headers never reach the program as trusted values', async () => {
    const forged = [
      'X-Forwarded-For: 6.6.6.6', 'X-Forwarded-For: 7.7.7.7', 'x-FORWARDED-for: 6.6.6.6', 'X-Forwarded-Proto: http',
      'X-Forwarded-Host: evil.example', 'X-Forwarded-Port: 1', 'X-Forwarded-Server: evil.example', 'X-Forwarded-Prefix: /evil',
      'X-Forwarded-Ssl: off', 'X-Real-IP: 6.6.6.6', 'Forwarded: for=6.6.6.6;proto=http;host=evil.example', 'Forwarded: for="[::6]"',
      'X_Forwarded_For: 6.6.6.6', 'X-Forwarded_Host: evil.example', 'X_Real_IP: 6.6.6.6',
      // Client-IP headers some CDNs and frameworks trust like X-Forwarded-For.
      'True-Client-IP: 6.6.6.6', 'CF-Connecting-IP: 6.6.6.6', 'X-Client-IP: 6.6.6.6', 'Client-IP: 6.6.6.6',
      'X-Cluster-Client-IP: 6.6.6.6', 'True_Client_IP: 6.6.6.6', 'CF_Connecting_IP: 6.6.6.6', 'X_Client_IP: 6.6.6.6',
      'Client_IP: 6.6.6.6', 'X_Cluster_Client_IP: 6.6.6.6',
      'Connection: keep-alive, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host',
    ];
    const reply = await rawTls(node, `GET /vm/${H}/forwarded HTTP/1.1\r\nHost: edge.test\r\n${forged.join('\r\n')}\r\nConnection: close\r\n\r\n`, { idleMs: 3000 });
    assert.deepEqual(statuses(reply.text), [200]);
    const seen = (await received()).at(-1)!;
    assert.equal(seen.url, '/forwarded');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-forwarded-host'], 'edge.test');
    assert.equal(seen.headers['x-forwarded-prefix'], `/vm/${H}`); // routed by path: the node's own prefix
    // Nothing the client sent survives under any forwarding-looking name ('_' and '-'
    // are the same to CGI/WSGI servers), and the forged values appear nowhere.
    const names: string[] = [];
    for (let i = 0; i < seen.rawHeaders.length; i += 2) names.push(seen.rawHeaders[i]!.toLowerCase().replaceAll('_', '-'));
    const clientIp = ['forwarded', 'x-real-ip', 'true-client-ip', 'cf-connecting-ip', 'x-client-ip', 'client-ip', 'x-cluster-client-ip'];
    const forwarding = names.filter((n) => n.startsWith('x-forwarded-') || clientIp.includes(n));
    assert.deepEqual(forwarding.sort(), ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-prefix', 'x-forwarded-proto']);
    const values = seen.rawHeaders.filter((_, i) => i % 2 === 1).join('\n');
    assert.doesNotMatch(values, /6\.6\.6\.6|7\.7\.7\.7|evil\.example|::6|\/evil/);
    process.stdout.write(`# forwarding: ${forged.length} forged headers sent, program saw only ${forwarding.join(', ')} with the node's values\n`);
  });

  it('the node is still healthy and the program saw only the legitimate requests', async () => {
    const reply = await get(node, `/vm/${H}/final`);
    assert.equal(reply.status, 200);
    const urls = (await received()).map((r) => r.url);
    assert.deepEqual(urls.filter((u) => !['/control', '/at-limit', '/via-label', '/forwarded', '/final'].includes(u) && !u.startsWith('/chunked')), []);
    assert.equal(node.child.exitCode, null);
    assert.deepEqual(currentWorkers(), workerPids, 'a worker died and was replaced');
  });
});
