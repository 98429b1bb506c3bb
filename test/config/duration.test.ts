import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDuration, parseSize } from '../../src/config/duration.js';

describe('parseDuration', () => {
  it('reads every unit', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('20s'), 20_000);
    assert.equal(parseDuration('60m'), 3_600_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('1d'), 86_400_000);
    assert.equal(parseDuration('0s'), 0);
  });

  it('reads compound and fractional durations', () => {
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1m30s500ms'), 90_500);
    assert.equal(parseDuration('1.5s'), 1500);
  });

  it('rejects malformed text', () => {
    for (const bad of ['', '20', 's', '20 s', '-1s', '1w', '20S', '1h 30m', '1.s', ' 5s', '5s ', '0x10s']) {
      assert.equal(parseDuration(bad), undefined, bad);
    }
  });
});

describe('parseSize', () => {
  it('reads binary and decimal units', () => {
    assert.equal(parseSize('16KiB'), 16 * 1024);
    assert.equal(parseSize('1MiB'), 1024 ** 2);
    assert.equal(parseSize('1GiB'), 1024 ** 3);
    assert.equal(parseSize('512B'), 512);
    assert.equal(parseSize('2MB'), 2_000_000);
    assert.equal(parseSize('1.5KiB'), 1536);
    assert.equal(parseSize('16 KiB'), 16 * 1024);
  });

  it('rejects malformed text and fractional bytes', () => {
    for (const bad of ['', '16', 'KiB', '16kib', '16XB', '-1KiB', '0.5B', '1.1KiB']) {
      assert.equal(parseSize(bad), undefined, bad);
    }
  });
});
