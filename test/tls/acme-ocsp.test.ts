// OCSP stapling: Pebble puts a responder URL in the certificates it issues; a small
// responder here answers "good" (structure only: clients check signatures, we do
// not). The node staples that response from its cache and asks the responder once.
// Certificates without a responder are skipped quietly.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import {
  BasicOCSPResponse, CertStatus, OCSPRequest, OCSPResponse, OCSPResponseStatus, ResponderID, ResponseBytes, ResponseData,
  SingleResponse, id_pkix_ocsp_basic,
} from '@peculiar/asn1-ocsp';
import { MetricsRegistry } from '../../src/metrics/registry.js';
import { InternalCa } from '../../src/tls/internal-ca.js';
import { OcspResponseError, OcspStapler, certId, ocspRequest, parseOcspResponse, serialOf } from '../../src/tls/ocsp.js';
import { splitPemCertificates } from '../../src/tls/pair.js';
import { createLogger } from '../../src/common/log.js';
import { startAcmeNode, startPebble, tempDir, type Pebble } from './acme-harness.js';

// A structurally valid "good" answer for the request's first CertID (unsigned: the
// stapler does not check signatures, clients do).
function goodResponse(requestDer: Buffer, now = new Date()): Buffer {
  const request = AsnConvert.parse(requestDer, OCSPRequest);
  const single = new SingleResponse({
    certID: request.tbsRequest.requestList[0]!.reqCert,
    certStatus: new CertStatus({ good: null }),
    thisUpdate: now,
    nextUpdate: new Date(now.getTime() + 3600_000),
  });
  const basic = new BasicOCSPResponse({
    tbsResponseData: new ResponseData({ responderID: new ResponderID({ byKey: new OctetString(Buffer.alloc(20, 7)) }), producedAt: now, responses: [single] }),
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' }),
    signature: new Uint8Array([0, 1, 2, 3]).buffer,
  });
  const response = new OCSPResponse({
    responseStatus: OCSPResponseStatus.successful,
    responseBytes: new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(AsnConvert.serialize(basic)) }),
  });
  return Buffer.from(AsnConvert.serialize(response));
}

function stapled(port: number, servername: string, ca: string): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    let staple: Buffer | undefined;
    // requestOCSP is a TLSSocket option that tls.connect passes on (missing from @types/node's ConnectionOptions).
    const options = { host: '127.0.0.1', port, servername, ca, requestOCSP: true } as tls.ConnectionOptions;
    const socket = tls.connect(options, () => {
      socket.end();
      resolve(staple);
    });
    socket.on('OCSPResponse', (response: Buffer) => (staple = response));
    socket.once('error', reject);
  });
}

describe('OCSP stapling', () => {
  let pebble: Pebble;
  let root: string;
  let work: { dir: string; cleanup: () => Promise<void> };
  let responder: http.Server;
  const served: Buffer[] = [];

  before(async () => {
    responder = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = goodResponse(Buffer.concat(chunks));
        served.push(body);
        res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(body);
      });
    });
    await new Promise<void>((resolve) => responder.listen(0, '127.0.0.1', resolve));
    pebble = await startPebble({ ocspResponderUrl: `http://127.0.0.1:${(responder.address() as AddressInfo).port}/` });
    root = await pebble.root();
    work = await tempDir('aleph-edge-acme-ocsp-');
  });
  after(async () => {
    responder?.close();
    await pebble?.stop();
    await work?.cleanup();
  });

  it('staples the responder\'s answer from the cache, fetching it once', async () => {
    const n = await startAcmeNode({ pebble, dir: work.dir, storage: path.join(work.dir, 'certs'), hosts: ['app.ocsp.test'] });
    try {
      await stapled(n.httpsPort, 'app.ocsp.test', root); // issues; the first staple may not be cached yet
      let staple: Buffer | undefined;
      const deadline = Date.now() + 5000;
      while (!staple && Date.now() < deadline) {
        staple = await stapled(n.httpsPort, 'app.ocsp.test', root);
        if (!staple) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(staple, 'a staple arrived');
      assert.equal(served.length, 1);
      assert.ok(staple.equals(served[0]!));
      assert.ok(((await stapled(n.httpsPort, 'app.ocsp.test', root)) ?? Buffer.alloc(0)).equals(served[0]!));
      assert.equal(served.length, 1, 'cached until half its validity');
      assert.equal(n.node.metrics.value('aleph_edge_ocsp_fetches_total', { result: 'good' }), 1);
    } finally {
      await n.close();
    }
  });

  it('parses what it staples, and skips certificates that name no responder', async () => {
    const storage = path.join(work.dir, 'internal');
    const ca = await InternalCa.open(storage);
    const pem = await ca.issue('plain.example.org');
    const [leafPem, issuerPem] = splitPemCertificates(pem.certPem + ca.certPem);
    const der = (p: string) => Buffer.from(p.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const metrics = new MetricsRegistry();
    const stapler = new OcspStapler({ log: createLogger('tls'), metrics });
    assert.equal(await stapler.fetch(der(leafPem!), der(issuerPem!)), undefined);
    assert.deepEqual(metrics.snapshot().find((f) => f.name === 'aleph_edge_ocsp_fetches_total')?.series ?? [], []);
    const response = goodResponse(ocspRequest(der(leafPem!), der(issuerPem!)));
    assert.equal(parseOcspResponse(response, serialOf(der(leafPem!))).status, 'good');
  });
});

const run = promisify(execFile);

// Responses signed by OpenSSL's own responder (an implementation independent of
// ours): our request must match its CertID, and we must read its answers.
describe('OCSP responses from OpenSSL', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  const file = (name: string) => path.join(work.dir, name);
  const pemDer = async (name: string) => Buffer.from((await readFile(file(name), 'utf8')).replace(/-----[^-]+-----|\s/g, ''), 'base64');

  before(async () => {
    work = await tempDir('aleph-edge-ocsp-openssl-');
    const ossl = (...args: string[]) => run('openssl', args, { cwd: work.dir });
    await ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=OCSP Test CA/O=aleph-edge', '-days', '2');
    await writeFile(file('ext.cnf'), 'basicConstraints=CA:FALSE\n');
    for (const name of ['good', 'revoked', 'other']) {
      await ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}.ocsp.test`);
      await ossl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', name === 'good' ? '0x00a1b2c3' : name === 'revoked' ? '4242' : '7', '-days', '1', '-extfile', 'ext.cnf', '-out', `${name}.pem`);
    }
    // index.txt: status, expiry, revocation time, serial (hex), file, subject.
    await writeFile(file('index.txt'), [
      'V\t301231000000Z\t\tA1B2C3\tunknown\t/CN=good.ocsp.test',
      'R\t301231000000Z\t240101000000Z\t1092\tunknown\t/CN=revoked.ocsp.test',
      '',
    ].join('\n'));
  });
  after(async () => {
    await work?.cleanup();
  });

  async function answer(name: string): Promise<Buffer> {
    const leaf = await pemDer(`${name}.pem`);
    await writeFile(file(`${name}.req`), ocspRequest(leaf, await pemDer('ca.pem')));
    await run('openssl', ['ocsp', '-index', 'index.txt', '-CA', 'ca.pem', '-rsigner', 'ca.pem', '-rkey', 'ca.key',
      '-reqin', `${name}.req`, '-respout', `${name}.resp`, '-ndays', '1'], { cwd: work.dir });
    return readFile(file(`${name}.resp`));
  }

  it('reads good, revoked and unknown answers to our own requests', async () => {
    const good = parseOcspResponse(await answer('good'), serialOf(await pemDer('good.pem')));
    assert.equal(good.status, 'good');
    assert.ok(good.nextUpdate && good.nextUpdate.getTime() > good.thisUpdate.getTime());
    assert.equal(parseOcspResponse(await answer('revoked'), serialOf(await pemDer('revoked.pem'))).status, 'revoked');
    assert.equal(parseOcspResponse(await answer('other'), serialOf(await pemDer('other.pem'))).status, 'unknown');
  });

  it('builds the CertID OpenSSL builds', async () => {
    await run('openssl', ['ocsp', '-issuer', 'ca.pem', '-cert', 'good.pem', '-reqout', 'openssl.req', '-no_nonce'], { cwd: work.dir });
    const theirs = AsnConvert.parse(await readFile(file('openssl.req')), OCSPRequest).tbsRequest.requestList[0]!.reqCert;
    assert.ok(Buffer.from(AsnConvert.serialize(theirs)).equals(certId(await pemDer('good.pem'), await pemDer('ca.pem'))));
  });

  it('refuses malformed, truncated, unsuccessful and unrelated responses with a clear error', async () => {
    const response = await answer('good');
    const serial = serialOf(await pemDer('good.pem'));
    const refused = (der: Buffer, message: RegExp) =>
      assert.throws(() => parseOcspResponse(der, serial), (err: unknown) => err instanceof OcspResponseError && message.test(err.message));
    refused(response.subarray(0, response.length - 10), /^malformed OCSP response/);
    refused(response.subarray(0, 3), /^malformed OCSP response/);
    refused(Buffer.alloc(0), /^malformed OCSP response/);
    refused(Buffer.from('<html>not ocsp</html>'), /^malformed OCSP response/);
    // OCSPResponse { responseStatus tryLater }
    refused(Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x03]), /responder status tryLater/);
    refused(Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x00]), /no body/);
    // A well-formed wrapper whose basic response is cut short.
    const top = AsnConvert.parse(response, OCSPResponse);
    const inner = Buffer.from(top.responseBytes!.response.buffer);
    top.responseBytes!.response = new OctetString(inner.subarray(0, inner.length - 20));
    refused(Buffer.from(AsnConvert.serialize(top)), /^malformed OCSP basic response/);
    const other = serialOf(await pemDer('other.pem'));
    assert.throws(() => parseOcspResponse(response, other), /does not cover this certificate/);
  });

  it('a stapler fed a truncated answer keeps serving without a staple', async () => {
    const response = await answer('good');
    const responder = http.createServer((_req, res) => res.writeHead(200).end(response.subarray(0, 40)));
    await new Promise<void>((resolve) => responder.listen(0, '127.0.0.1', resolve));
    try {
      const port = (responder.address() as AddressInfo).port;
      const ossl = (...args: string[]) => run('openssl', args, { cwd: work.dir });
      await writeFile(file('aia.cnf'), `basicConstraints=CA:FALSE\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:${port}/\n`);
      await ossl('x509', '-req', '-in', 'good.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '0x00a1b2c3', '-days', '1', '-extfile', 'aia.cnf', '-out', 'aia.pem');
      const metrics = new MetricsRegistry();
      const stapler = new OcspStapler({ log: createLogger('tls'), metrics });
      assert.equal(await stapler.fetch(await pemDer('aia.pem'), await pemDer('ca.pem')), undefined);
      assert.equal(metrics.value('aleph_edge_ocsp_fetches_total', { result: 'error' }), 1);
    } finally {
      responder.close();
    }
  });
});
