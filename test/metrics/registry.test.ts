import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { familyTotal, mergeSnapshots, MetricsRegistry, renderExposition } from '../../src/metrics/index.js';
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

describe('metrics as data', () => {
  function workerRegistry(requests: number, errors: number): MetricsRegistry {
    const registry = new MetricsRegistry();
    const counter = registry.counter('aleph_edge_requests_total', 'Requests answered, by status class');
    counter.inc({ class: '2xx' }, requests);
    registry.counter('aleph_edge_errors_total', 'Error replies, by kind').inc({ kind: 'not_found' }, errors);
    registry.histogram('aleph_edge_request_duration_seconds', 'Request duration', [0.1, 1]).observe(0.05, { class: '2xx' });
    return registry;
  }

  it('reads values from the registry: one label set, every label set, sampled counters', () => {
    const registry = new MetricsRegistry();
    const counter = registry.counter('aleph_edge_test_total', 'A test counter');
    counter.inc({ b: '2', a: '1' }, 3);
    counter.inc({ a: '1', b: '2' });
    counter.inc({ a: '9' });
    assert.equal(counter.get({ a: '1', b: '2' }), 4);
    assert.equal(counter.get({ a: 'never' }), 0);
    assert.equal(counter.total(), 5);
    let dropped = 7;
    const sampled = registry.counter('aleph_edge_sampled_total', 'Kept elsewhere');
    sampled.collect(() => dropped);
    assert.equal(sampled.get(), 7);
    dropped = 8;
    assert.equal(sampled.total(), 8);
    // By name, as tests and summaries read them: any family, any label order.
    registry.gauge('aleph_edge_test_gauge', 'Sampled').collect(() => [[{ pool: 'b', kind: 'a' }, 3]]);
    registry.histogram('aleph_edge_test_seconds', 'Timed', [1]).observe(0.5, { class: '2xx' });
    assert.equal(registry.value('aleph_edge_test_total', { b: '2', a: '1' }), 4);
    assert.equal(registry.value('aleph_edge_sampled_total'), 8);
    assert.equal(registry.value('aleph_edge_test_gauge', { kind: 'a', pool: 'b' }), 3);
    assert.equal(registry.value('aleph_edge_test_seconds', { class: '2xx' }), 1);
    assert.equal(registry.value('aleph_edge_test_seconds', { class: '5xx' }), 0);
    assert.equal(registry.value('aleph_edge_never_registered_total'), 0);
  });

  it('a snapshot is plain data (what a worker sends over IPC), its labels in one order', () => {
    const registry = new MetricsRegistry();
    registry.counter('aleph_edge_test_total', 'A test counter').inc({ b: '2', a: '1' }, 2);
    registry.gauge('aleph_edge_test_gauge', 'A sampled gauge').collect(() => [[{ z: 'last', m: 'mid' }, 1.5]]);
    registry.histogram('aleph_edge_test_seconds', 'A histogram', [0.1, 1]).observe(0.5, { class: '2xx' });
    const snapshot = registry.snapshot();
    assert.deepEqual(snapshot, [
      { name: 'aleph_edge_test_total', help: 'A test counter', type: 'counter', series: [{ labels: { a: '1', b: '2' }, value: 2 }] },
      { name: 'aleph_edge_test_gauge', help: 'A sampled gauge', type: 'gauge', series: [{ labels: { m: 'mid', z: 'last' }, value: 1.5 }] },
      { name: 'aleph_edge_test_seconds', help: 'A histogram', type: 'histogram', buckets: [0.1, 1], series: [{ labels: { class: '2xx' }, counts: [0, 1], sum: 0.5, count: 1 }] },
    ]);
    assert.deepEqual(JSON.parse(JSON.stringify(snapshot)), snapshot);
    assert.equal(renderExposition(snapshot), registry.render());
  });

  it('merges a primary and its workers: each family once, worker label first, totals summed from the data', async () => {
    const primary = new MetricsRegistry();
    primary.counter('aleph_edge_boots_total', 'Program boots').inc({}, 2);
    primary.counter('aleph_edge_requests_total', 'Requests answered, by status class');
    const merged = mergeSnapshots([
      { families: primary.snapshot() },
      { families: workerRegistry(5, 1).snapshot(), labels: { worker: '0' } },
      { families: workerRegistry(7, 2).snapshot(), labels: { worker: '1' } },
    ]);
    assert.equal(familyTotal(merged, 'aleph_edge_requests_total'), 12);
    assert.equal(familyTotal(merged, 'aleph_edge_errors_total'), 3);
    assert.equal(familyTotal(merged, 'aleph_edge_boots_total'), 2);
    assert.equal(familyTotal(merged, 'aleph_edge_absent_total'), 0);
    const text = renderExposition(merged);
    assert.match(text, /^aleph_edge_requests_total\{worker="0",class="2xx"\} 5$/m);
    assert.match(text, /^aleph_edge_requests_total\{worker="1",class="2xx"\} 7$/m);
    assert.match(text, /^aleph_edge_request_duration_seconds_bucket\{worker="1",class="2xx",le="\+Inf"\} 1$/m);
    assert.match(text, /^aleph_edge_boots_total 2$/m);
    assert.equal(text.match(/^# TYPE aleph_edge_requests_total /gm)?.length, 1);
    // Prometheus's own parser: a family split in two or a second HELP would fail here.
    const lint = await promtoolCheck(text);
    assert.equal(lint.code, 0, lint.output);
  });
});
