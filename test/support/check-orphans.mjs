// Runs after the test suite: no program, VM or node started by a test may outlive it.
// Looks for live (non-zombie) processes whose command line points into this checkout's
// example or fixture programs, or into a test's temporary folder.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(fileURLToPath(new URL('../../', import.meta.url)));
const markers = [path.join(root, 'examples') + '/', path.join(root, 'test/fixtures') + '/', 'aleph-edge-test-', 'aleph-edge-cli-', 'aleph-edge-chromium-', 'qemu-system'];

function orphans() {
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1];
      if (state === 'Z') continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (markers.some((m) => cmdline.includes(m))) found.push(`${entry} ${cmdline}`);
    } catch {
      // The process went away while we looked: not an orphan.
    }
  }
  return found;
}

// Stopping programs may still be in their grace period when the last test returns.
const deadline = Date.now() + 10_000;
let left = orphans();
while (left.length > 0 && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 250));
  left = orphans();
}
if (left.length > 0) {
  console.error(`orphan check: ${left.length} process(es) outlived the test suite:\n${left.join('\n')}`);
  process.exit(1);
}
console.log('orphan check: no program or VM outlived the test suite');
