import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatCerts, formatDuration, formatListener, formatStatus, formatVms, shortenHash } from '../../src/status/index.js';
import { FakeProvider, HASH_A, sampleCerts, sampleVms } from './helpers.js';

const NOW = new Date('2025-06-01T12:00:00Z');

describe('status formatting', () => {
  it('formats durations compactly', () => {
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(42.9), '42s');
    assert.equal(formatDuration(307), '5m07s');
    assert.equal(formatDuration(11_100), '3h05m');
    assert.equal(formatDuration(183_600), '2d03h');
    assert.equal(formatDuration(-1), '-');
    assert.equal(formatDuration(Number.NaN), '-');
  });

  it('shortens hashes to 12 chars and an ellipsis', () => {
    assert.equal(shortenHash(HASH_A), `${HASH_A.slice(0, 12)}…`);
    assert.equal(shortenHash('abc'), 'abc');
  });

  it('aligns the vms table columns', () => {
    const lines = formatVms(sampleVms(NOW.getTime()), NOW).trimEnd().split('\n');
    assert.equal(lines.length, 3);
    // Every left-aligned column starts at the same offset on every line.
    for (const header of ['NAME', 'STATE', 'DRIVER', 'ENDPOINT']) {
      const at = lines[0]!.indexOf(header);
      const values = lines.slice(1).map((line) => line.slice(at, at + 1));
      assert.ok(values.every((c) => c !== ' '), `${header} column aligned`);
      assert.ok(lines.slice(1).every((line) => line[at - 1] === ' '));
    }
    // Right-aligned numbers end under their header.
    const requestsEnd = lines[0]!.indexOf('REQUESTS') + 'REQUESTS'.length;
    assert.equal(lines[1]!.slice(requestsEnd - 4, requestsEnd), '1534');
    assert.equal(lines[2]!.slice(requestsEnd - 1, requestsEnd), '0');
    assert.match(lines[2]!, /\s-\s/); // empty name shown as '-'
    assert.ok(lines.every((line) => line === line.trimEnd()));
  });

  it('neutralizes control characters in names and issuers', () => {
    const [vm] = sampleVms(NOW.getTime());
    const text = formatVms([{ ...vm!, name: 'evil\u001b[2J\nname' }], NOW);
    assert.ok(!text.includes('\u001b'));
    assert.equal(text.trimEnd().split('\n').length, 2);
    const [cert] = sampleCerts(NOW.getTime());
    assert.ok(!formatCerts([{ ...cert!, issuer: 'CA\u0007' }], NOW).includes('\u0007'));
  });

  it('shows days left and expiry for certificates', () => {
    const text = formatCerts(sampleCerts(NOW.getTime()), NOW);
    assert.match(text, /^api\.example\.org\s+acme\s+2025-08-20 13:00 UTC\s+80\s+/m);
    assert.match(text, /^localhost\s+internal\s+2025-06-01 11:00 UTC\s+expired\s+aleph-edge internal CA$/m);
  });

  it('prints clear lines for empty lists', () => {
    assert.equal(formatVms([]), 'no programs running\n');
    assert.equal(formatCerts([]), 'no certificates\n');
  });

  it('formats listeners at the end, from their structure', () => {
    assert.equal(formatListener({ protocol: 'https', address: '127.0.0.1', port: 8443 }), 'https 127.0.0.1:8443');
    assert.equal(formatListener({ protocol: 'http', address: '::', port: 80 }), 'http [::]:80');
    assert.equal(formatListener({ protocol: 'https', address: '0.0.0.0', port: 443, fd: 3 }), 'https 0.0.0.0:443 (fd 3)');
    assert.equal(formatListener({ protocol: 'http', fd: 4 }), 'http fd 4');
  });

  it('summarizes a snapshot, including draining and no listeners', () => {
    const snapshot = { ...new FakeProvider().snapshot(), draining: true, listeners: [], vms: [] };
    const text = formatStatus(snapshot);
    assert.match(text, /^state\s+draining$/m);
    assert.match(text, /^listeners\s+none$/m);
    assert.match(text, /^programs\s+none running$/m);
    assert.match(text, /^counters\s+boots\s{7}4\n\s+errors_5xx\s{2}3\n\s+requests\s{4}1534\n$/m);
  });
});
