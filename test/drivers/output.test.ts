import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LineRateLimiter, LineSplitter, type StreamName } from '../../src/drivers/host/index.js';

function splitter(max = 10): { lines: string[]; s: LineSplitter } {
  const lines: string[] = [];
  return { lines, s: new LineSplitter('stdout', max, (_stream: StreamName, text: string) => lines.push(text)) };
}

describe('LineSplitter', () => {
  it('splits on newlines across chunk boundaries and strips CR', () => {
    const { lines, s } = splitter();
    s.push(Buffer.from('ab'));
    s.push(Buffer.from('c\r\nde\n\nf'));
    s.end();
    assert.deepEqual(lines, ['abc', 'de', '', 'f']);
  });

  it('truncates long lines and skips the rest up to the newline', () => {
    const { lines, s } = splitter(4);
    s.push(Buffer.from('abcdefgh'));
    s.push(Buffer.from('ijk\nxy\n'));
    s.push(Buffer.from('1234\n'));
    s.end();
    assert.deepEqual(lines, ['abcd…[truncated]', 'xy', '1234']);
  });

  it('escapes control characters', () => {
    const { lines, s } = splitter(100);
    s.push(Buffer.from('red \x1b[31mX\ta\rb\n'));
    assert.deepEqual(lines, ['red \\x1b[31mX\ta\\x0db']);
  });
});

describe('LineRateLimiter', () => {
  it('lets a burst through, then counts drops and reports them on recovery', async () => {
    const logged: string[] = [];
    const drops: number[] = [];
    let now = 1_000;
    const limiter = new LineRateLimiter(
      { maxLineBytes: 100, linesPerSecond: 100, burstLines: 5 },
      { line: (_s, text) => logged.push(text), dropped: (n) => drops.push(n) },
      () => now,
    );
    for (let i = 0; i < 20; i++) limiter.offer('stdout', `l${i}`);
    assert.deepEqual(logged, ['l0', 'l1', 'l2', 'l3', 'l4']);
    assert.deepEqual(drops, []);
    now += 9; // not yet a whole token back
    limiter.offer('stdout', 'dropped');
    assert.equal(logged.at(-1), 'l4');
    now += 30; // refills 3 tokens
    limiter.offer('stderr', 'late');
    assert.deepEqual(drops, [16]);
    assert.equal(logged.at(-1), 'late');
  });
});
