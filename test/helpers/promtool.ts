import { spawn } from 'node:child_process';

/**
 * Runs Prometheus's own parser and linter (`promtool check metrics`, Debian package
 * `prometheus`) on an exposition. Resolves with its exit code and output; rejects
 * when promtool is missing (a test that needs it fails rather than skips).
 */
export function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c));
    child.stderr.on('data', (c: Buffer) => (output += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}
