// OCSP stapling: Pebble puts a responder URL in the certificates it issues; a small
// responder here answers "good" (structure only: clients check signatures, we do
// not). The node staples that response from its cache and asks the responder once.
// Certificates without a responder are skipped quietly.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { MetricsRegistry } from '../../src/metrics/registry.js';
import { TAG, oid, readTlv, tlv, toGeneralizedTime } from '../../src/tls/der.js';
import { InternalCa } from '../../src/tls/internal-ca.js';
import { OcspStapler, parseOcspResponse } from '../../src/tls/ocsp.js';
import { splitPemCertificates } from '../../src/tls/pair.js';
import { createLogger } from '../../src/common/log.js';
import { startAcmeNode, startPebble, tempDir, type Pebble } from './acme-harness.js';

function goodResponse(certIdRaw: Buffer, now = new Date()): Buffer {
  const single = tlv(TAG.SEQUENCE, certIdRaw, Buffer.from([0x80, 0x00]), toGeneralizedTime(now),
    tlv(0xa0, toGeneralizedTime(new Date(now.getTime() + 3600_000))));
  const data = tlv(TAG.SEQUENCE, tlv(0xa2, tlv(TAG.OCTET_STRING, Buffer.alloc(20, 7))), toGeneralizedTime(now), tlv(TAG.SEQUENCE, single));
  const basic = tlv(TAG.SEQUENCE, data, tlv(TAG.SEQUENCE, oid('1.2.840.10045.4.3.2')), tlv(TAG.BIT_STRING, Buffer.from([0, 1, 2, 3])));
  return tlv(TAG.SEQUENCE, tlv(TAG.ENUMERATED, Buffer.from([0])),
    tlv(0xa0, tlv(TAG.SEQUENCE, oid('1.3.6.1.5.5.7.48.1.1'), tlv(TAG.OCTET_STRING, basic))));
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
        const request = readTlv(Buffer.concat(chunks));
        const certId = request.children[0]!.children[0]!.children[0]!.children[0]!;
        const body = goodResponse(Buffer.from(certId.raw));
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
      assert.match(n.node.metrics.render(), /aleph_edge_ocsp_fetches_total\{result="good"\} 1/);
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
    assert.doesNotMatch(metrics.render(), /aleph_edge_ocsp_fetches_total\{/);
    const serial = readTlv(der(leafPem!)).children[0]!.children[1]!.raw;
    const certId = tlv(TAG.SEQUENCE, tlv(TAG.SEQUENCE, oid('1.3.14.3.2.26'), tlv(TAG.NULL)), tlv(TAG.OCTET_STRING, Buffer.alloc(20)), tlv(TAG.OCTET_STRING, Buffer.alloc(20)), serial);
    assert.equal(parseOcspResponse(goodResponse(certId), serial).status, 'good');
  });
});
