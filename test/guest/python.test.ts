// The guest Python (guest/: the ASGI server) has its own unittest suite; this runs it
// with Debian's python3 so `npm test` covers it, and fails when anything fails or is skipped.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { ROOT } from '../helpers/paths.js';

const PYTHON = '/usr/bin/python3';

function runUnittest(): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-m', 'unittest', 'discover', '-s', 'guest/tests', '-t', 'guest'], {
      cwd: ROOT,
      // No bytecode files written into the source tree by the test run.
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('guest Python (python3 -m unittest discover -s guest/tests -t guest)', () => {
  it('passes, with no test skipped', { timeout: 300_000 }, async () => {
    const { code, output } = await runUnittest();
    assert.equal(code, 0, output.slice(-6000));
    const ran = /^Ran (\d+) tests? in/m.exec(output);
    assert.ok(ran && Number(ran[1]) > 40, `expected the whole suite to run:\n${output.slice(-2000)}`);
    assert.doesNotMatch(output, /skipped=|expected failures=/, output.slice(-2000));
  });
});
