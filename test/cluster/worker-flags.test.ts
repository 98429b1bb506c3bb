import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WORKER_V8_FLAGS, workerExecArgv } from '../../src/cluster/worker-flags.js';

describe('worker V8 flags', () => {
  it('workers get the young-generation cap after the primary\'s own flags', () => {
    assert.deepEqual(workerExecArgv(['--enable-source-maps']), ['--enable-source-maps', ...WORKER_V8_FLAGS]);
    assert.ok(WORKER_V8_FLAGS.some((f) => f.startsWith('--max-semi-space-size=')));
  });

  it('a flag the operator set on the command line or in NODE_OPTIONS wins', () => {
    assert.deepEqual(workerExecArgv(['--max-semi-space-size=16']), ['--max-semi-space-size=16']);
    assert.deepEqual(workerExecArgv(['--max_semi_space_size=8']), ['--max_semi_space_size=8']);
    assert.deepEqual(workerExecArgv([], '--trace-gc  --max-semi-space-size=32'), []);
    assert.deepEqual(workerExecArgv([], '--trace-gc'), [...WORKER_V8_FLAGS]);
  });
});
