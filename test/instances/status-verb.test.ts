// `aleph-edge instance start|stop|erase HASH` over a real status socket: what reaches
// the node, what the CLI prints, and the refusals (bad usage exits 2, the node's own
// refusals come back as their message, never a stack).

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BootFailedError, NotFoundError } from '../../src/common/index.js';
import { runStatusCommand, startStatusServer, type InstanceAction, type StatusServer } from '../../src/status/index.js';
import { FakeProvider, HASH_A, rawRequest } from '../status/helpers.js';

class InstanceProvider extends FakeProvider {
  readonly actions: Array<[InstanceAction, string]> = [];
  refuse: Error | undefined;
  async instance(action: InstanceAction, hash: string): Promise<boolean> {
    this.actions.push([action, hash]);
    if (this.refuse) throw this.refuse;
    return action !== 'erase';
  }
}

describe('the instance status verb', () => {
  let dir: string;
  let server: StatusServer;
  const provider = new InstanceProvider();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-instance-verb-'));
    server = await startStatusServer({ path: join(dir, 'status.sock'), provider });
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await runStatusCommand(['instance', ...argv, '--socket', server.path], { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (err += t) }, env: {} });
    return { code, out, err };
  }

  it('start, stop and erase reach the node with the hash', async () => {
    provider.refuse = undefined;
    assert.deepEqual(await cli('start', HASH_A.toUpperCase()), { code: 0, out: `started ${HASH_A}\n`, err: '' });
    assert.deepEqual(await cli('stop', HASH_A), { code: 0, out: `stopped ${HASH_A}\n`, err: '' });
    assert.deepEqual(await cli('erase', HASH_A), { code: 0, out: `${HASH_A} had nothing to erase\n`, err: '' });
    assert.deepEqual(provider.actions.splice(0), [['start', HASH_A], ['stop', HASH_A], ['erase', HASH_A]]);
  });

  it('bad usage exits 2 and asks the node nothing', async () => {
    for (const argv of [['reboot', HASH_A], ['start'], ['start', 'abc123'], ['start', HASH_A, HASH_A]]) {
      const result = await cli(...argv);
      assert.equal(result.code, 2, argv.join(' '));
      assert.match(result.err, /instance takes start, stop or erase|malformed instance hash/);
    }
    assert.deepEqual(provider.actions, []);
  });

  it("the node's refusals come back with their reason and status", async () => {
    provider.refuse = new BootFailedError('content.rootfs.size_mib: 10 MiB is smaller than the parent image (2048 MiB)');
    const refused = await cli('start', HASH_A);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /content\.rootfs\.size_mib: 10 MiB is smaller than the parent image/);
    provider.refuse = new NotFoundError('no program message on the Aleph network');
    assert.equal((await rawRequest(server.path, 'POST', `/instances/${HASH_A}/start`)).status, 404);
    provider.refuse = new Error('/secret/path exploded');
    const internal = await rawRequest(server.path, 'POST', `/instances/${HASH_A}/start`);
    assert.equal(internal.status, 500);
    assert.ok(!internal.text.includes('/secret/path'));
    assert.equal((await rawRequest(server.path, 'POST', '/instances/nothex/start')).status, 400);
    assert.equal((await rawRequest(server.path, 'GET', `/instances/${HASH_A}/start`)).status, 405);
  });
});
