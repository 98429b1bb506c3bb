import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { promtoolCheck } from '../helpers/promtool.js';

describe('metrics registry labels', () => {
  it('label sets are one series whatever the key order; values are escaped as the format requires', async () => {
    const registry = new MetricsRegistry();
    const counter = registry.counter('aleph_edge_test_total', 'A test counter');
    counter.inc({ b: '2', a: '1' });
    counter.inc({ a: '1', b: '2' });
    counter.inc({ class: '2xx' });
    counter.inc({ path: 'C:\\dir "quoted"\nnext' });
    counter.inc();
    assert.equal(counter.get({ b: '2', a: '1' }), 2);
    assert.equal(counter.get({ class: '2xx' }), 1);
    const text = registry.render();
    assert.match(text, /^aleph_edge_test_total\{a="1",b="2"\} 2$/m);
    assert.match(text, /^aleph_edge_test_total\{class="2xx"\} 1$/m);
    assert.ok(text.includes('aleph_edge_test_total{path="C:\\\\dir \\"quoted\\"\\nnext"} 1'), text);
    assert.match(text, /^aleph_edge_test_total 1$/m);
    const lint = await promtoolCheck(text);
    assert.equal(lint.code, 0, lint.output);
  });
});
