// Each ACME order judges a failure by its own last answer. acme-client's errors do not
// carry the HTTP status, so the issuer asks the gate; with one status per CA, a
// concurrent order's 200 answered in between made a refused order look like a CA
// outage (pausing every order), and a 5xx look like a refusal of one name.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setAcmeHttpRetry } from '../../src/tls/acme-account.js';
import { acmeLib } from '../../src/tls/acme-lib.js';
import { caGate, installCaGate } from '../../src/tls/acme-gate.js';

describe('ACME gate: the status of an order\'s own last answer', () => {
  let server: http.Server;
  let origin: string;

  before(async () => {
    // /refuse answers 403 after 30 ms, /fine 200 after 120 ms, /down 503 after 30 ms.
    server = http.createServer((req, res) => {
      const [status, delay] = req.url === '/refuse' ? [403, 30] : req.url === '/down' ? [503, 30] : [200, 120];
      req.resume();
      setTimeout(() => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end('{}');
      }, delay);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    await installCaGate(acmeLib);
    // One answer per request: acme-client would retry the 503 for a minute.
    await setAcmeHttpRetry(0, 0);
  });

  after(async () => {
    caGate.clear();
    await new Promise((resolve) => server.close(resolve));
  });

  it('an order refused while another is answered 200 later still sees its 403; one whose CA failed still sees its 503', async () => {
    const { axios } = await acmeLib();
    const request = (path: string) => axios.get(`${origin}${path}`).catch(() => undefined);
    const [refused, failed, fine] = await Promise.all([
      caGate.runOrder(async () => { await request('/refuse'); await new Promise((r) => setTimeout(r, 150)); return caGate.orderStatus(origin); }),
      caGate.runOrder(async () => { await request('/down'); await new Promise((r) => setTimeout(r, 150)); return caGate.orderStatus(origin); }),
      caGate.runOrder(async () => { await request('/fine'); return caGate.orderStatus(origin); }),
    ]);
    // The CA's last answer was the 200; each order still judges by its own.
    assert.equal(caGate.lastStatus(origin), 200);
    assert.equal(refused, 403);
    assert.equal(failed, 503);
    assert.equal(fine, 200);
    // Outside an order (or before its first answer): the CA's last answer.
    assert.equal(caGate.orderStatus(origin), 200);
    assert.equal(await caGate.runOrder(async () => caGate.orderStatus(origin)), 200);
  });
});
