// The diagnostic program's own unittest suite (examples/diagnostic/test_main.py),
// run with Debian's python3 so `npm test` covers it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../helpers/paths.js';

describe('examples/diagnostic (python3 -m unittest)', () => {
  it('passes, with no test skipped', { timeout: 120_000 }, async () => {
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const child = spawn('/usr/bin/python3', ['-m', 'unittest', '-v'], {
        cwd: path.join(ROOT, 'examples/diagnostic'),
        env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.on('error', reject);
      child.on('close', (exit) => resolve({ code: exit, output: text }));
    });
    assert.equal(code, 0, output.slice(-4000));
    const ran = /^Ran (\d+) tests? in/m.exec(output);
    assert.ok(ran && Number(ran[1]) >= 8, output.slice(-2000));
    assert.doesNotMatch(output, /skipped=/);
  });
});
