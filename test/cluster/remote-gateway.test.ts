// A worker's leases: requests that follow each other on a warm lease send nothing to
// the primary (two IPC messages per request at low concurrency were most of the
// CPU per request above node-floor, docs/benchmarks.md); a lease left unused is
// announced as lingering, taken back from linger when used, and given back at the
// end of its linger with the requests it served.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RemoteGateway } from '../../src/cluster/remote-gateway.js';
import { WorkerChannel } from '../../src/cluster/worker-channel.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { until } from '../helpers/node.js';

interface Sent { type: string; id?: number; lingering?: boolean; requests?: number }

const HASH = 'ab'.repeat(32);

/** The gateway with a channel whose primary is this test: it answers every acquire with a lease. */
function gatewayWith(lingerMs: number) {
  const sent: Sent[] = [];
  let leaseId = 0;
  const channel: WorkerChannel = new WorkerChannel((message) => {
    const m = message as Sent;
    sent.push(m);
    if (m.type === 'acquire') {
      const value = { leaseId: ++leaseId, hash: HASH, endpoint: { kind: 'tcp', host: '127.0.0.1', port: 1 }, requestTimeoutMs: 0, lingerMs };
      queueMicrotask(() => channel.settle({ type: 'reply', id: m.id!, ok: true, value } as never));
    }
  });
  return { gateway: new RemoteGateway(channel, new MetricsRegistry()), sent };
}

describe('RemoteGateway leases', () => {
  it('requests one after another on a warm lease send nothing to the primary', async () => {
    const { gateway, sent } = gatewayWith(60_000);
    (await gateway.acquire(HASH)).release();
    const before = sent.length;
    for (let i = 0; i < 1000; i++) {
      const lease = gateway.leaseIfReady(HASH);
      assert.ok(lease, 'the lingering lease is reused');
      lease.release();
    }
    assert.deepEqual(sent.slice(before), []);
    assert.equal(sent.filter((m) => m.type === 'acquire').length, 1);
  });

  it('an unused lease is announced as lingering, and taken back from linger when used', async () => {
    // A linger long enough that no stall of a loaded machine can end it during the test.
    const { gateway, sent } = gatewayWith(600_000);
    (await gateway.acquire(HASH)).release();
    await until(() => sent.some((m) => m.type === 'linger' && m.lingering === true), 60_000, 'the linger notice');
    const lease = gateway.leaseIfReady(HASH);
    assert.ok(lease);
    assert.deepEqual(sent.filter((m) => m.type === 'linger').map((m) => m.lingering), [true, false]);
    lease.release();
    await until(() => sent.filter((m) => m.type === 'linger').length === 3, 60_000, 'the second linger notice');
    assert.equal(sent.filter((m) => m.type === 'release').length, 0);
  });

  it('a lease is given back at the end of its linger with the requests it served', async () => {
    const { gateway, sent } = gatewayWith(100);
    const first = await gateway.acquire(HASH);
    const second = gateway.leaseIfReady(HASH)!;
    first.release();
    second.release();
    await until(() => sent.some((m) => m.type === 'release'), 60_000, 'the lease given back');
    assert.equal(sent.find((m) => m.type === 'release')!.requests, 2);
    assert.equal(gateway.leaseIfReady(HASH), undefined, 'a lease given back is not reused');
  });
});
