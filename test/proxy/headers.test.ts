// Request headers for the program: h2 cookie fields joined (RFC 9113 8.2.3), the
// node's X-Forwarded-* (with the mount prefix for path-routed programs) and no client's.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { upstreamRequestRawHeaders } from '../../src/proxy/headers.js';
import { mountPrefix } from '../../src/routing/index.js';

const info = { clientIp: '203.0.113.9', proto: 'https' as const, host: 'edge.test' };

function pairs(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

describe('upstream request headers', () => {
  it('joins several cookie fields into one, in order, where the first was', () => {
    const raw = [':method', 'GET', 'cookie', 'a=1', 'accept', '*/*', 'Cookie', 'b=2', 'cookie', 'c=3'];
    const out = pairs(upstreamRequestRawHeaders({ rawHeaders: raw, headers: {} }, info));
    assert.deepEqual(out.slice(0, 2), [['cookie', 'a=1; b=2; c=3'], ['accept', '*/*']]);
    assert.equal(out.filter(([name]) => name.toLowerCase() === 'cookie').length, 1);
  });

  it('a single cookie line is forwarded as it came', () => {
    const out = pairs(upstreamRequestRawHeaders({ rawHeaders: ['Host', 'edge.test', 'Cookie', 'a=1; b=2'], headers: {} }, info));
    assert.deepEqual(out.find(([name]) => name === 'Cookie'), ['Cookie', 'a=1; b=2']);
  });

  it('sends X-Forwarded-Prefix only for a program mounted under a path, and never the client\'s', () => {
    const hash = 'ab'.repeat(32);
    const prefix = mountPrefix({ kind: 'program', hash, path: '/x', via: 'path' });
    assert.equal(prefix, `/vm/${hash}`);
    assert.equal(mountPrefix({ kind: 'program', hash, path: '/x', via: 'label' }), undefined);
    const forged = ['Host', 'edge.test', 'X-Forwarded-Prefix', '/evil'];
    const routed = pairs(upstreamRequestRawHeaders({ rawHeaders: forged, headers: {} }, { ...info, prefix }));
    assert.deepEqual(routed.filter(([name]) => name.toLowerCase() === 'x-forwarded-prefix'), [['x-forwarded-prefix', `/vm/${hash}`]]);
    const byHost = pairs(upstreamRequestRawHeaders({ rawHeaders: forged, headers: {} }, info));
    assert.deepEqual(byHost.filter(([name]) => name.toLowerCase() === 'x-forwarded-prefix'), []);
  });
});
