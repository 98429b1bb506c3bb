// Owner and scheduler authentication, checked against the reference's own test vector
// (aleph-vm doc/operator_auth.md) and against signatures made by an independent signer
// (test/control/signer.py: Debian's python3-ecdsa, -pycryptodome, -nacl, -base58).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { setLogLevel } from '../../src/common/index.js';
import { ControlError } from '../../src/control/index.js';
import { AllocationAuth } from '../../src/control/allocation-auth.js';
import { authenticateHeaders, authenticateMessage } from '../../src/control/operator-auth.js';
import { sign, OWNER_KEY, SCHEDULER_KEY } from './helpers.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

// doc/operator_auth.md's WebSocket example, signed in 2010 for domain "localhost".
const REFERENCE_AUTH = {
  'X-SignedPubKey': {
    payload: '7b227075626b6579223a207b22637276223a2022502d323536222c20226b7479223a20224543222c202278223a20223962446f34754949686b735a5272677a31477972325050656d4334364e735f4730577144364d4d6a774673222c202279223a20226f48343342786c7854334f3065733336685967713143372d61325a535a71456d5f6b56356e636c79667a59227d2c2022616c67223a20224543445341222c2022646f6d61696e223a20226c6f63616c686f7374222c202261646472657373223a2022307862413236623135333539314434363230666432413734304130463165463730644164363532336230222c202265787069726573223a2022323031302d31322d32365431373a30353a35355a227d',
    signature: '0xea99ef5f1a10f2d103f94dce4f8650730315246e6d15cf9e5862c11adfd6482703cd1ec684a4f3dffb36ae5c4a57b08a47108fe55e3b2454e45f6e63342e0f471b',
  },
  'X-SignedOperation': {
    payload: '7b2274696d65223a2022323031302d31322d32355431373a30353a35355a222c20226d6574686f64223a2022474554222c202270617468223a20222f222c2022646f6d61696e223a20226c6f63616c686f7374227d',
    signature: '6f737654cd00e4d4155d387509978e7a9a4d27f5b59c9492ac1dec7b09f9aecc58c9365526bbddd6211b65f40f4956c50ab26f395f7170ce1698c11e28e25d3a',
  },
};
const REFERENCE_NOW = Date.parse('2010-12-25T17:06:00Z');

function refused(code: string, message: RegExp) {
  return (error: unknown) => error instanceof ControlError && error.code === code && message.test(error.message);
}

describe('operator authentication', () => {
  it("accepts the reference's own example at its time, and nothing altered", () => {
    assert.equal(authenticateMessage(REFERENCE_AUTH, 'localhost', REFERENCE_NOW), '0xbA26b153591D4620fd2A740A0F1eF70dAd6523b0');
    assert.throws(() => authenticateMessage(REFERENCE_AUTH, 'edge.test', REFERENCE_NOW), refused('unauthenticated', /Invalid domain/));
    assert.throws(() => authenticateMessage(REFERENCE_AUTH, 'localhost', Date.parse('2010-12-26T18:00:00Z')), refused('unauthenticated', /^Token expired$/));
    assert.throws(() => authenticateMessage(REFERENCE_AUTH, 'localhost', REFERENCE_NOW + 3 * 60_000), refused('unauthenticated', /too far in the past/));
    const flipped = structuredClone(REFERENCE_AUTH);
    flipped['X-SignedOperation'].signature = `70${flipped['X-SignedOperation'].signature.slice(2)}`;
    assert.throws(() => authenticateMessage(flipped, 'localhost', REFERENCE_NOW), refused('unauthenticated', /Signature could not verified/));
    const forged = structuredClone(REFERENCE_AUTH);
    forged['X-SignedPubKey'].payload = forged['X-SignedPubKey'].payload.replace('6c6f63616c686f7374', '6c6f63616c686f7375'); // "localhost" -> "localhosu"
    assert.throws(() => authenticateMessage(forged, 'localhost', REFERENCE_NOW), refused('unauthenticated', /^Invalid signature$/));
  });

  it('accepts Ethereum and Solana wallets signing with an independent signer; refuses stale, expired, wrong path or method', async () => {
    const now = Date.now();
    const target = { domain: 'edge.test', method: 'POST', path: '/control/machine/abc/stop' };
    const base = { domain: 'edge.test', method: 'POST', path: target.path, time: new Date(now).toISOString(), expires: new Date(now + 3600_000).toISOString() };
    const eth = await sign({ job: 'operator', wallet: { chain: 'ETH', key: OWNER_KEY }, ...base });
    assert.equal(authenticateHeaders(eth.headers['X-SignedPubKey'], eth.headers['X-SignedOperation'], target, now), eth.address);
    const sol = await sign({ job: 'operator', wallet: { chain: 'SOL', seed: '11'.repeat(32) }, ...base });
    assert.equal(authenticateHeaders(sol.headers['X-SignedPubKey'], sol.headers['X-SignedOperation'], target, now), sol.address);
    assert.throws(() => authenticateHeaders(eth.headers['X-SignedPubKey'], eth.headers['X-SignedOperation'], { ...target, path: '/control/machine/abc/erase' }, now), refused('unauthenticated', /Invalid path/));
    assert.throws(() => authenticateHeaders(eth.headers['X-SignedPubKey'], eth.headers['X-SignedOperation'], { ...target, method: 'GET' }, now), refused('unauthenticated', /Invalid method/));
    assert.throws(() => authenticateHeaders(eth.headers['X-SignedPubKey'], eth.headers['X-SignedOperation'], target, now + 5 * 60_000), refused('unauthenticated', /too far in the past/));
    assert.throws(() => authenticateHeaders(eth.headers['X-SignedPubKey'], eth.headers['X-SignedOperation'], target, now - 5 * 60_000), refused('unauthenticated', /too far in the future/));
    const expired = await sign({ job: 'operator', wallet: { chain: 'ETH', key: OWNER_KEY }, ...base, expires: new Date(now - 1000).toISOString() });
    assert.throws(() => authenticateHeaders(expired.headers['X-SignedPubKey'], expired.headers['X-SignedOperation'], target, now), refused('unauthenticated', /^Token expired$/));
    // A key claiming another address than the wallet that signed it.
    const claimed = await sign({ job: 'operator', wallet: { chain: 'ETH', key: OWNER_KEY }, ...base, claim: '0x2937f62e5f81a88e921f883f8fe56cecf4a4a44a' });
    assert.throws(() => authenticateHeaders(claimed.headers['X-SignedPubKey'], claimed.headers['X-SignedOperation'], target, now), refused('unauthenticated', /^Invalid signature$/));
    assert.throws(() => authenticateHeaders(undefined, undefined, target, now), refused('bad_request', /^Missing X-SignedPubKey header$/));
    assert.throws(() => authenticateHeaders('nope', undefined, target, now), refused('bad_request', /^Invalid X-SignedPubKey format$/));
    assert.throws(() => authenticateHeaders(eth.headers['X-SignedPubKey'], undefined, target, now), refused('bad_request', /^Missing X-SignedOperation header$/));
  });
});

describe('hostile credentials', () => {
  it('every malformed header or message is a 400 or 401 ControlError, never a crash', () => {
    const target = { domain: 'edge.test', method: 'GET', path: '/' };
    const hex = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('hex');
    const pub = (payload: string, signature = '00') => JSON.stringify({ payload, signature });
    const cases: Array<[string | undefined, string | undefined]> = [
      ['', ''], ['null', ''], ['[]', ''], ['{"payload": 1, "signature": 2}', ''], [pub('zz'), ''], [pub('abc'), ''],
      [pub(hex('not an object')), ''], [pub(hex({ pubkey: {}, address: 1, expires: 'x' })), ''],
      [pub(hex({ pubkey: { kty: 'EC' }, address: '0x1', expires: 'tomorrow' })), ''],
      [pub(hex({ pubkey: { kty: 'EC' }, address: '0x1', expires: '2999-01-01T00:00:00Z', chain: 'BTC' })), ''],
      [pub(hex({ pubkey: { kty: 'EC' }, address: '0x1', expires: '2999-01-01T00:00:00Z' }), '0x' + '11'.repeat(65)), ''],
      [pub(hex({ pubkey: { kty: 'EC' }, address: 'not-base58-0OIl', expires: '2999-01-01T00:00:00Z', chain: 'SOL' }), '11'.repeat(64)), ''],
      [pub(hex({ pubkey: 'x'.repeat(10_000), address: '0x1', expires: '2999-01-01T00:00:00Z' })), 'x'.repeat(10_000)],
    ];
    for (const [signedPubKey, signedOperation] of cases) {
      assert.throws(() => authenticateHeaders(signedPubKey, signedOperation, target),
        (e: unknown) => e instanceof ControlError && (e.code === 'bad_request' || e.code === 'unauthenticated'), String(signedPubKey).slice(0, 80));
    }
    for (const auth of [null, 1, 'x', [], {}, { 'X-SignedPubKey': 'x' }, { 'X-SignedPubKey': { payload: '00', signature: '00' }, 'X-SignedOperation': null }]) {
      assert.throws(() => authenticateMessage(auth, 'edge.test'), (e: unknown) => e instanceof ControlError, JSON.stringify(auth));
    }
  });
});

describe('allocation authentication', () => {
  const path = '/control/allocations';
  const settings = (signers: string[], tokenHash = '') => () => ({ authorizedAllocationSigners: signers, allocationTokenHash: tokenHash, allocationSignatureMaxAgeMs: 300_000 });

  async function signed(body: string, iat = Math.floor(Date.now() / 1000), key = SCHEDULER_KEY) {
    return (await sign({ job: 'allocation', key, method: 'POST', path, body, iat })).authorization as string;
  }
  const request = (headers: Record<string, string>, query = '') => ({ method: 'POST', path, query, headers, body: '' });

  it('accepts the configured signer once per payload; refuses others, tampering, staleness, query strings', async () => {
    const scheduler = (await sign({ job: 'address', key: SCHEDULER_KEY })).address as string;
    const auth = new AllocationAuth(settings([scheduler]));
    const body = '{"persistent_vms":[]}';
    // Two payloads that differ only by their time: `fresh` must never be `header` again (a replay).
    const now = Math.floor(Date.now() / 1000);
    const header = await signed(body, now);
    assert.equal(auth.verify(request({ authorization: header }), Buffer.from(body)), scheduler);
    const invalid = refused('unauthenticated', /^Authentication token received is invalid$/);
    assert.throws(() => auth.verify(request({ authorization: header }), Buffer.from(body)), invalid, 'replay');
    const other = await signed(body, undefined, OWNER_KEY);
    assert.throws(() => auth.verify(request({ authorization: other }), Buffer.from(body)), invalid, 'wrong signer');
    const fresh = await signed(body, now - 1);
    assert.throws(() => auth.verify(request({ authorization: fresh }), Buffer.from('{"persistent_vms":["x"]}')), invalid, 'tampered body');
    assert.throws(() => auth.verify(request({ authorization: fresh }, 'a=1'), Buffer.from(body)), invalid, 'query string');
    const stale = await signed(body, now - 301);
    assert.throws(() => auth.verify(request({ authorization: stale }), Buffer.from(body)), invalid, 'stale');
    assert.throws(() => auth.verify(request({}), Buffer.from(body)), invalid, 'unsigned');
    assert.throws(() => auth.verify(request({ authorization: header.replace('Aleph-EIP191-V1', 'Bearer') }), Buffer.from(body)), invalid, 'other scheme');
    assert.throws(() => auth.verify(request({ authorization: `${fresh},extra=1` }), Buffer.from(body)), invalid, 'unknown parameter');
    // The same (not yet replayed) request with the right body passes.
    assert.equal(auth.verify(request({ authorization: fresh }), Buffer.from(body)), scheduler);
  });

  it("with no signer configured, only the reference's built-in scheduler signer is accepted (not ours)", async () => {
    const auth = new AllocationAuth(settings([]));
    const body = '{}';
    const header = await signed(body);
    assert.throws(() => auth.verify(request({ authorization: header }), Buffer.from(body)), refused('unauthenticated', /invalid/));
  });

  it('the deprecated X-Auth-Signature token, only when its sha256 is configured; an Authorization header wins', async () => {
    const token = 'scheduler-shared-token';
    const hash = createHash('sha256').update(token).digest('hex');
    const off = new AllocationAuth(settings([]));
    assert.throws(() => off.verify(request({ 'x-auth-signature': token }), Buffer.alloc(0)), refused('unauthenticated', /invalid/));
    const on = new AllocationAuth(settings([], hash));
    assert.equal(on.verify(request({ 'x-auth-signature': token }), Buffer.alloc(0)), 'token');
    assert.throws(() => on.verify(request({ 'x-auth-signature': `${token}x` }), Buffer.alloc(0)), refused('unauthenticated', /invalid/));
    assert.throws(() => on.verify(request({ 'x-auth-signature': token, authorization: 'Aleph-EIP191-V1 sig=00,payload=00' }), Buffer.alloc(0)), refused('unauthenticated', /invalid/));
  });
});
