// [control]: defaults, normalization, and errors with their line.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, defaultControlSettings, parseConfig } from '../../src/config/index.js';

const BASE = '[server]\ndomain = "edge.test"\n[tls]\nmode = "internal"\n';

function issues(text: string): string[] {
  try {
    parseConfig(text, '/etc/aleph-edge.toml');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.issues.map((issue) => `${issue.line} ${issue.key}: ${issue.message}`);
  }
  return [];
}

describe('[control] configuration', () => {
  it('is absent without the table (defaults apply), read and normalized with it', () => {
    assert.equal(parseConfig(BASE, '/x.toml').control, undefined);
    assert.deepEqual(defaultControlSettings(), { authorizedAllocationSigners: [], allocationTokenHash: '', allocationSignatureMaxAgeMs: 300_000 });
    const settings = parseConfig(`${BASE}[control]\nauthorized_allocation_signers = ["0x2937f62e5F81A88e921f883f8fE56ceCf4A4A44A"]\nallocation_token_hash = "${'AB'.repeat(32)}"\nallocation_signature_max_age = "2m"\n`, '/x.toml');
    assert.deepEqual(settings.control, {
      authorizedAllocationSigners: ['0x2937f62e5f81a88e921f883f8fe56cecf4a4a44a'],
      allocationTokenHash: 'ab'.repeat(32),
      allocationSignatureMaxAgeMs: 120_000,
    });
  });

  it('names the line of a bad address, hash, duration or unknown key', () => {
    assert.deepEqual(issues(`${BASE}[control]\nauthorized_allocation_signers = ["0x123"]\nallocation_token_hash = "nope"\nallocation_signature_max_age = "0s"\nsigners = []\n`), [
      '6 control.authorized_allocation_signers[0]: "0x123" is not an Ethereum address (0x and 40 hex digits)',
      '7 control.allocation_token_hash: must be a sha256 in hex (64 digits), or "" to refuse X-Auth-Signature',
      '8 control.allocation_signature_max_age: must be at least 1000ms, got "0s"',
      '9 control.signers: unknown key',
    ]);
  });
});
