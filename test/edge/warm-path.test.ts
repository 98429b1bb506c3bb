import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT } from '../helpers/paths.js';

// The edge serves a warm program on a route known without a lookup with callbacks only
// (Router.routeNow, Forwarder.relay): an async step per request cost 9 promises and
// their continuations, a measurable share of a worker (docs/benchmarks.md). Counted,
// not timed: the count does not depend on how busy the machine is.
it('a request to a warm program makes no promise; a node page (async) does', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(ROOT, 'dist/test/edge/warm-path-child.js')], {
    env: { ...process.env, ALEPH_EDGE_LOG: 'warn' },
    timeout: 240_000,
  });
  const counts = JSON.parse(stdout.trim().split('\n').pop()!) as { program: number; page: number };
  console.log(`promises per request: warm program ${counts.program}, node page ${counts.page}`);
  // Background work (the usage sampler, timers of the orchestrator) may make a few in
  // the window: well under one per request. Before the change it was 9.
  assert.ok(counts.program < 0.5, `warm program: ${counts.program} promises per request`);
  assert.ok(counts.page >= 1, `node page: ${counts.page} promises per request (the count must see async paths)`);
});
