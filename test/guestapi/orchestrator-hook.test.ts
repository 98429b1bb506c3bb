// The orchestrator opens a guest API session before the driver starts a program and
// closes it on every way an execution ends: failed boot, boot timeout, crash, stop,
// drain. Real GuestApi (sockets on disk), real process driver.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BootFailedError, setLogLevel } from '../../src/common/index.js';
import type { OrchestratorSettings } from '../../src/config/index.js';
import { ProcessDriver, waitForHttp } from '../../src/drivers/index.js';
import { GuestApi } from '../../src/guestapi/index.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { Orchestrator, type GuestServices, type ReadinessProbe } from '../../src/orchestrator/index.js';
import { LocalProgramSource } from '../../src/programs/index.js';
import { until } from '../helpers/node.js';
import { fixtureProgram } from '../helpers/paths.js';
import { settingsFor } from './helpers.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

const probe: ReadinessProbe = async (endpoint, { path: p, signal }) => {
  await waitForHttp(endpoint, { path: p, signal, deadline: Number.MAX_SAFE_INTEGER });
};
const hashOf = (n: number) => n.toString(16).padStart(64, '0');

function settings(overrides: Partial<OrchestratorSettings> = {}): OrchestratorSettings {
  return {
    driver: 'process', idleTimeoutMs: 60_000, bootTimeoutMs: 10_000, requestTimeoutMs: 30_000,
    maxVms: 64, memoryBudgetMib: 8192, holdQueue: 100, stopGraceMs: 2_000, ...overrides,
  };
}

describe('orchestrator guest API sessions', () => {
  let dir: string;
  let socketDir: string;
  let api: GuestApi;
  const orchestrators: Orchestrator[] = [];

  const programs = (entries: Array<{ n: number; env?: Record<string, string> }>) => new LocalProgramSource(entries.map((e) => ({
    hash: hashOf(e.n), name: `p${e.n}`, command: [process.execPath, fixtureProgram('sockets.js')], cwd: dir,
    env: e.env ?? {}, memoryMib: 64, vcpus: 1, healthPath: '', requestTimeoutMs: 0,
  })));
  const orchestrator = (source: LocalProgramSource, guest: GuestServices = api, overrides: Partial<OrchestratorSettings> = {}) => {
    const o = new Orchestrator({ settings: settings(overrides), programs: source, driver: new ProcessDriver({ stopGraceMs: 1000 }), probe, metrics: new MetricsRegistry(), guest });
    orchestrators.push(o);
    return o;
  };
  const sockets = () => readdirSync(socketDir).filter((name) => name.endsWith('.sock'));

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-ghook-'));
    socketDir = path.join(dir, 'g');
    api = await GuestApi.create(settingsFor(socketDir, 'redis://127.0.0.1:9'), { alephApi: 'http://127.0.0.1:9' });
  });
  after(async () => {
    await Promise.all(orchestrators.map((o) => o.drain(0)));
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('opens one session per execution and closes it when the execution is stopped', async () => {
    const o = orchestrator(programs([{ n: 1 }]));
    (await o.acquire(hashOf(1))).release();
    assert.equal(api.openSessions, 1);
    assert.deepEqual(sockets(), [`${o.list()[0]!.hash.slice(0, 12)}-1.sock`]);
    await o.stop(hashOf(1));
    assert.equal(api.openSessions, 0);
    assert.deepEqual(sockets(), []);
  });

  it('closes it when the program fails to boot, and when the boot times out', async () => {
    const o = orchestrator(programs([{ n: 2, env: { EXIT_AT_START: '1' } }, { n: 3, env: { START_DELAY_MS: '60000' } }]), api, { bootTimeoutMs: 400 });
    await assert.rejects(o.acquire(hashOf(2)), BootFailedError);
    assert.equal(api.openSessions, 0);
    await assert.rejects(o.acquire(hashOf(3)), /timed out/);
    assert.equal(api.openSessions, 0);
    assert.deepEqual(sockets(), []);
  });

  it('closes it when the program crashes', async () => {
    // Crashed on request (GET /crash exits 7), not on a timer that a loaded machine could
    // let fire before the readiness probe is answered.
    const o = orchestrator(programs([{ n: 4 }]));
    const lease = await o.acquire(hashOf(4));
    assert.equal(api.openSessions, 1);
    const { endpoint } = lease;
    lease.release();
    await fetch(`http://127.0.0.1:${endpoint.kind === 'tcp' ? endpoint.port : 0}/crash`).catch(() => undefined);
    await until(() => api.openSessions === 0, 30_000, 'session closed after the crash');
    assert.equal(o.list()[0]?.state, 'failed');
    assert.deepEqual(sockets(), []);
  });

  it('closes every session on drain', async () => {
    const o = orchestrator(programs([{ n: 5 }, { n: 6 }]));
    await Promise.all([5, 6].map(async (n) => (await o.acquire(hashOf(n))).release()));
    assert.equal(api.openSessions, 2);
    await o.drain(1000);
    assert.equal(api.openSessions, 0);
    assert.deepEqual(sockets(), []);
  });

  it('fails the boot with a clear reason when the session cannot be opened, without starting the program', async () => {
    let starts = 0;
    const broken: GuestServices = { open: async () => { starts++; throw new Error('socket folder is read-only'); } };
    const o = orchestrator(programs([{ n: 7 }]), broken);
    await assert.rejects(o.acquire(hashOf(7)), (error: Error) => error instanceof BootFailedError && /guest API unavailable: socket folder is read-only/.test(error.message));
    assert.equal(starts, 1);
    assert.equal(o.list()[0]?.pid, null, 'no process was started');
  });
});
