import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'smol-toml';
import { formatPath } from '../../src/config/keypath.js';
import { locateKeys } from '../../src/config/locate.js';

const SOURCE = `# leading comment
title = "x"              # line 2
[server]
domain = "a.b"
"quoted key" = 1
https_listen = [
  "0.0.0.0:443",  # a comment with ] and [
  "[::]:443",
]
notes = """
[not.a.header]
key = "still a string \\""" """
limits.max_body_bytes = 5
[tls]
issue_rate = { burst = 5, interval = "60s" }
literal = '''
[also.not]'''
[[programs.local]]
hash = "a"
[[programs.local]]
hash = "b"
env = { A = "1", B = "2" }
[programs.local.extra]
x = 1
[[programs.local]]
  hash = "c"
when = 1979-05-27 07:32:00
after = 1
`;

describe('locateKeys', () => {
  const locator = locateKeys(SOURCE);
  const at = (...path: (string | number)[]) => {
    const { line, column } = locator.find(path);
    return `${line}:${column}`;
  };

  it('uses a source that is valid TOML', () => {
    assert.doesNotThrow(() => parse(SOURCE));
  });

  it('finds top-level keys and table headers', () => {
    assert.equal(at('title'), '2:1');
    assert.equal(at('server'), '3:1');
    assert.equal(at('server', 'domain'), '4:1');
    assert.equal(at('server', 'quoted key'), '5:1');
  });

  it('finds array elements, skipping comments and strings that look like syntax', () => {
    assert.equal(at('server', 'https_listen'), '6:1');
    assert.equal(at('server', 'https_listen', 0), '7:3');
    assert.equal(at('server', 'https_listen', 1), '8:3');
    assert.equal(at('server', 'limits', 'max_body_bytes'), '13:8');
    assert.equal(at('server', 'limits'), '13:1');
    assert.equal(at('tls'), '14:1');
    assert.equal(at('tls', 'literal'), '16:1');
  });

  it('finds keys inside inline tables', () => {
    assert.equal(at('tls', 'issue_rate', 'burst'), '15:16');
    assert.equal(at('tls', 'issue_rate', 'interval'), '15:27');
  });

  it('numbers arrays of tables and their sub-tables', () => {
    assert.equal(at('programs', 'local', 0), '18:1');
    assert.equal(at('programs', 'local', 0, 'hash'), '19:1');
    assert.equal(at('programs', 'local', 1, 'hash'), '21:1');
    assert.equal(at('programs', 'local', 1, 'env', 'B'), '22:18');
    assert.equal(at('programs', 'local', 1, 'extra', 'x'), '24:1');
    assert.equal(at('programs', 'local', 2, 'hash'), '26:3');
  });

  it('skips dates containing a space', () => {
    assert.equal(at('programs', 'local', 2, 'after'), '28:1');
  });

  it('falls back to the nearest ancestor, then to 1:1', () => {
    assert.equal(at('server', 'missing'), '3:1');
    assert.equal(at('programs', 'local', 1, 'command'), '20:1');
    assert.equal(at('routing', 'dns_servers'), '1:1');
  });
});

describe('formatPath', () => {
  it('joins keys with dots and indexes with brackets, quoting odd keys', () => {
    assert.equal(formatPath(['programs', 'local', 2, 'hash']), 'programs.local[2].hash');
    assert.equal(formatPath(['server', 'a key']), 'server."a key"');
    assert.equal(formatPath([]), '');
  });
});
