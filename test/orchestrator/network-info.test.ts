// What a driver says about its VM's network (tap addresses, IPv6, forwarded ports)
// reaches the execution records the node API lists, and reflects forwards changed
// while the VM runs. The driver here is the real process driver; only the network
// description is added to its instance, as a VM driver adds it.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setLogLevel } from '../../src/common/index.js';
import { ProcessDriver, waitForHttp, type Driver, type InstanceNetwork } from '../../src/drivers/index.js';
import { MetricsRegistry } from '../../src/metrics/index.js';
import { executionsV1, executionsV2 } from '../../src/nodeapi/executions.js';
import { Orchestrator } from '../../src/orchestrator/index.js';
import { LocalProgramSource } from '../../src/programs/index.js';
import { fixtureProgram } from '../helpers/paths.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('silent');

describe('execution records carry the VM network', () => {
  it('from the driver\'s instance to /about/executions/list, v1 and v2', async () => {
    const hash = '5e'.repeat(32);
    const ports: InstanceNetwork['mappedPorts'] = { '22': { host: 24000, tcp: true, udp: false } };
    const network = {
      ipv4Network: '172.16.0.4/30', ipv4: '172.16.0.6', ipv6Network: '2001:db8:1:2:1:5e5e:5e5e:5e50/124', ipv6: '2001:db8:1:2:1:5e5e:5e5e:5e51', hostIpv4: '203.0.113.7',
      get mappedPorts() {
        return ports;
      },
    };
    const real = new ProcessDriver({ stopGraceMs: 2000 });
    const driver: Driver = {
      name: 'process',
      start: async (program, slot) => Object.assign(await real.start(program, slot), { network }),
    };
    const programs = new LocalProgramSource([{ hash, name: 'net', command: [process.execPath, fixtureProgram('sockets.js')], cwd: process.cwd(), env: {}, memoryMib: 64, vcpus: 1, healthPath: '', requestTimeoutMs: 0 }]);
    const o = new Orchestrator({
      settings: { driver: 'process', idleTimeoutMs: 60_000, bootTimeoutMs: 10_000, requestTimeoutMs: 30_000, maxVms: 4, memoryBudgetMib: 1024, holdQueue: 10, stopGraceMs: 2000 },
      programs, driver, probe: (endpoint, { path, signal }) => waitForHttp(endpoint, { path, signal, deadline: Number.MAX_SAFE_INTEGER }).then(() => {}), metrics: new MetricsRegistry(),
    });
    try {
      (await o.acquire(hash)).release();
      const list = o.list();
      assert.deepEqual(executionsV1(list)[hash]!.networking, { ipv4: '172.16.0.4/30', ipv6: '2001:db8:1:2:1:5e5e:5e5e:5e50/124' });
      ports['2222'] = { host: 24001, tcp: true, udp: true }; // the owner's forwards changed while it runs
      const v2 = executionsV2(o.list())[hash]!.networking;
      assert.equal(v2.ipv6_ip, '2001:db8:1:2:1:5e5e:5e5e:5e51');
      assert.equal(v2.ipv4_ip, '172.16.0.6');
      assert.equal(v2.host_ipv4, '203.0.113.7');
      assert.deepEqual(JSON.parse(JSON.stringify(v2.mapped_ports)), { '22': { host: 24000, tcp: true, udp: false }, '2222': { host: 24001, tcp: true, udp: true } });
    } finally {
      await o.drain(0);
    }
  });
});
