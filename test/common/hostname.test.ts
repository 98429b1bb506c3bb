import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequestError, canonicalHost, isHostName, isIpLiteral, parseHost } from '../../src/common/index.js';
import { isCertName, normalizeServerName } from '../../src/tls/hostname.js';

function rejectsHost(raw: string): void {
  assert.throws(
    () => parseHost(raw),
    (err: unknown) => err instanceof BadRequestError && err.message === 'invalid Host header',
    `expected ${JSON.stringify(raw)} to be rejected`,
  );
}

describe('parseHost', () => {
  it('returns canonical hosts unchanged', () => {
    assert.equal(parseHost('vm.example.org'), 'vm.example.org');
    assert.equal(parseHost('localhost'), 'localhost');
    assert.equal(parseHost('a-b.c0.example'), 'a-b.c0.example');
  });

  it('strips the port, lowercases and strips one trailing dot', () => {
    assert.equal(parseHost('vm.example.org:443'), 'vm.example.org');
    assert.equal(parseHost('VM.Example.ORG'), 'vm.example.org');
    assert.equal(parseHost('vm.example.org.'), 'vm.example.org');
    assert.equal(parseHost('VM.example.org.:8443'), 'vm.example.org');
    assert.equal(parseHost('vm.example.org:'), 'vm.example.org'); // empty port is legal (RFC 3986)
  });

  it('accepts IP literals', () => {
    assert.equal(parseHost('127.0.0.1'), '127.0.0.1');
    assert.equal(parseHost('127.0.0.1:8080'), '127.0.0.1');
    assert.equal(parseHost('[::1]'), '::1');
    assert.equal(parseHost('[2001:DB8::1]:443'), '2001:db8::1');
    assert.ok(isIpLiteral('127.0.0.1'));
    assert.ok(isIpLiteral('::1'));
    assert.ok(!isIpLiteral('vm.example.org'));
    assert.ok(!isIpLiteral('host1'));
  });

  it('refuses underscores anywhere (no public CA may certify them), and numeric last labels that are no IPv4', () => {
    rejectsHost('my_app.example.org');
    rejectsHost('_aleph-id.example.org');
    rejectsHost('app.example_org');
    rejectsHost('10.1');
    rejectsHost('app.123');
    assert.equal(parseHost('app.123abc'), 'app.123abc');
  });

  it('accepts 63-char labels and 253-char names, rejects longer', () => {
    const label63 = 'a'.repeat(63);
    assert.equal(parseHost(`${label63}.example`), `${label63}.example`);
    rejectsHost(`${'a'.repeat(64)}.example`);
    const name253 = [label63, label63, label63, 'a'.repeat(61)].join('.');
    assert.equal(name253.length, 253);
    assert.equal(parseHost(name253), name253);
    assert.equal(parseHost(name253 + '.'), name253);
    rejectsHost(name253 + 'a');
  });

  it('rejects malformed hosts', () => {
    for (const raw of [
      '',
      '.',
      ':443',
      'a..b',
      '.example.org',
      'example.org..',
      '-a.example.org',
      'a-.example.org',
      'a.-b.org',
      'ex ample.org',
      'example.org/evil',
      'example.org\\evil',
      'user@example.org',
      'exa%6dple.org',
      'example.org:99999',
      'example.org:12a',
      'example.org:443:1',
      'a:b',
      '::1', // IPv6 must be bracketed
      '[::1',
      '[::1]x',
      '[::1]:',
      '[fe80::1%25eth0]',
      '[not-an-ip]',
      'exämple.org',
      'example.org\u0000',
      'tab\there',
    ]) {
      if (raw === '[::1]:') continue; // empty port after brackets is legal, checked below
      rejectsHost(raw);
    }
    assert.equal(parseHost('[::1]:'), '::1');
  });
});

describe('one host-name rule for the edge, routing and TLS', () => {
  const samples = [
    'vm.example.org', 'VM.Example.ORG.', 'a-b.c0.example', 'localhost', 'xn--bcher-kva.example', 'my_app.example.org',
    '_aleph-id.example.org', '-a.example', 'a-.example', 'a..b', 'app.123', '10.1', '127.0.0.1', '[::1]', 'a/b', 'a b',
    `${'a'.repeat(63)}.example`, `${'a'.repeat(64)}.example`, 'vm.example.org:443',
  ];

  it('a host that routes gets a certificate, and a name TLS refuses does not route', () => {
    for (const raw of samples) {
      const host = canonicalHost(raw);
      const routes = host !== undefined && !isIpLiteral(host);
      const certifiable = host !== undefined && isCertName(host);
      assert.equal(certifiable, routes, `${JSON.stringify(raw)}: routes ${routes}, certificate name ${certifiable}`);
      // SNI carries no port: the same name without one is accepted by both or neither.
      if (!raw.includes(':') && !raw.startsWith('[')) assert.equal(normalizeServerName(raw), routes ? host : undefined, raw);
    }
  });

  it('isHostName accepts only the canonical form', () => {
    assert.ok(isHostName('vm.example.org'));
    for (const name of ['VM.example.org', 'vm.example.org.', 'vm.example.org:443', '127.0.0.1', '::1', '', 'my_app.example']) {
      assert.equal(isHostName(name), false, name);
    }
  });
});
