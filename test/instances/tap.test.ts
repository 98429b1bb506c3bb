// An instance on the tap path (root), in a network namespace the test makes, with the
// real qemu driver, nftables and iproute2: the instance gets a tap and an IPv4 subnet
// from the pool, the IPv6 /124 whose first address is the monitor's for an instance
// (vm type 3, computed in Python the way aleph-scoring does) routed to its tap and
// answered for by the NDP proxy on the uplink, its forwarded ports (22 and the owner's)
// as nftables DNAT from the uplink to its IPv4, and a cloud-init network-config with
// those addresses (read back from the ISO the VM is given). qemu runs (QMP says so)
// but the guest does not boot here: its disk is an empty image, a full TCG boot being
// minutes (test/instances/boot.test.ts boots one under user-mode networking;
// test/drivers/vmnet.test.ts sends traffic through the same pool's forwards and
// NDP proxy to a booted program VM). When qemu ends, nothing of ours remains.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setLogLevel } from '../../src/common/index.js';
import { NetworkPool } from '../../src/drivers/net/index.js';
import { QemuDriver } from '../../src/drivers/qemu/index.js';
import { findExecutable } from '../../src/drivers/vm/index.js';
import type { Program } from '../../src/programs/index.js';
import { hostnameOf } from '../../src/programs/aleph/index.js';
import { nextSlot } from '../drivers/helpers.js';
import { netnsSkipReason, processesWith, qemuSkipReason } from '../drivers/qemu-guest.js';
import { monitorAddress, nftRules, nftTable, nftTables } from '../drivers/vmnet-helpers.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');

const POOL6 = '2001:db8:7a3f:2::/64';
const NODE_V4 = '192.0.2.1';
const HASH = '8f3c2a1b0e9d4c7a6b5f40312e1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a291';

function skipReason(): string {
  const reason = qemuSkipReason() || netnsSkipReason();
  if (reason) return reason;
  for (const tool of ['nft', 'python3', 'isoinfo', 'qemu-img']) if (!findExecutable(tool)) return `${tool} is not installed (.ci/setup.d/vmnet.sh, instances.sh)`;
  return '';
}

describe('an instance on the tap path: tap, IPv4 from the pool, IPv6 at the monitor\'s address, nftables forwards', { skip: skipReason() || false, timeout: 180_000 }, () => {
  const ns = `aein2${process.pid}n`;
  let dir = '';
  const ip = (...args: string[]) => execFileSync('ip', ['-n', ns, ...args], { encoding: 'utf8' });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-instance-tap-'));
    execFileSync('ip', ['netns', 'add', ns]);
    // The uplink: a veth whose peer stays in the namespace (no traffic is sent here).
    ip('link', 'add', 'aein2up', 'type', 'veth', 'peer', 'name', 'aein2peer');
    ip('link', 'set', 'lo', 'up');
    ip('addr', 'add', `${NODE_V4}/24`, 'dev', 'aein2up');
    ip('-6', 'addr', 'add', '2001:db8:7a3f:2::100/64', 'dev', 'aein2up', 'nodad');
    for (const dev of ['aein2up', 'aein2peer']) ip('link', 'set', dev, 'up');
  });

  after(async () => {
    if (!dir) return;
    for (const pid of processesWith(dir)) process.kill(pid, 'SIGKILL');
    spawnSync('ip', ['netns', 'del', ns]);
    await rm(dir, { recursive: true, force: true });
  });

  it('is given its tap and addresses by the pool, forwards from the uplink, and leaves nothing behind', async () => {
    const runDir = join(dir, 'vms');
    const netState = join(dir, 'net');
    // qemu must open the tap in the namespace: the driver runs it through this wrapper (exec keeps the pid).
    const wrapper = join(dir, 'qemu-in-netns');
    await writeFile(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} qemu-system-x86_64 "$@"\n`);
    await chmod(wrapper, 0o755);
    const parent = join(dir, 'parent.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', parent, '16M']);

    const pool = new NetworkPool({
      pool: '10.213.22.0/29', prefix: 30, tapPrefix: 'aein2t', stateDir: netState, outboundInterface: 'aein2up', netns: ns,
      ipv6Pool: POOL6, hostPorts: { min: 24100, max: 24109 },
    });
    // No kernel or initramfs: a node for instances only.
    const driver = new QemuDriver({ stopGraceMs: 3000, binary: wrapper, kernel: '', initramfs: '', machine: 'auto', accel: 'tcg', network: 'tap', runDir, pool });
    const stateDir = join(dir, 'volumes', HASH);
    const program: Program = {
      hash: HASH, name: '', memoryMib: 256, vcpus: 1, healthPath: '', requestTimeoutMs: 0, persistent: true,
      launch: {
        kind: 'machine', parent, parentFormat: 'qcow2', disk: join(stateDir, 'rootfs.qcow2'), sizeMib: 64, stateDir,
        hostname: hostnameOf(HASH), authorizedKeys: [], internet: false, volumes: [],
        ports: [{ port: 22, tcp: true, udp: false }, { port: 8080, tcp: true, udp: true }],
      },
    };
    const expected = monitorAddress(POOL6, HASH, 3);
    assert.equal(expected, '2001:db8:7a3f:2:3:8f3c:2a1b:e91');

    const slot = nextSlot();
    const instance = await driver.start(program, slot);
    let killed = false;
    try {
      const lease = pool.leases().find((l) => l.owner === slot.executionId)!;
      assert.equal(lease.tap, 'aein2t0');
      assert.equal(lease.guestIp, '10.213.22.2');

      // What the node API lists (v2 executions: ipv4, ipv6, mapped_ports).
      assert.equal(instance.network?.ipv4, '10.213.22.2');
      assert.equal(instance.network?.ipv6, expected, 'the monitor\'s address');
      assert.equal(instance.network?.ipv6Network, '2001:db8:7a3f:2:3:8f3c:2a1b:e90/124');
      assert.equal(instance.network?.hostIpv4, NODE_V4);
      assert.deepEqual(instance.mappedPorts, { '22': { host: 24100, tcp: true, udp: false }, '8080': { host: 24101, tcp: true, udp: true } });

      // qemu on the tap, in the namespace.
      const cmdline = (await readFile(`/proc/${instance.pid}/cmdline`, 'utf8')).split('\0');
      assert.ok(cmdline.includes('tap,id=n0,ifname=aein2t0,script=no,downscript=no'), cmdline.join(' '));
      assert.match(ip('link', 'show', 'aein2t0'), /state (UP|UNKNOWN)|,UP/);
      assert.match(ip('-4', 'addr', 'show', 'dev', 'aein2t0'), /inet 10\.213\.22\.1\/30 /, 'the gateway on the tap');
      assert.match(ip('-6', 'route', 'show', 'dev', 'aein2t0'), /^2001:db8:7a3f:2:3:8f3c:2a1b:e90\/124 /m, 'the /124 is routed to the tap');
      assert.match(ip('-6', 'neigh', 'show', 'proxy', 'dev', 'aein2up'), new RegExp(`^${expected} `, 'm'), 'the NDP proxy answers for it on the uplink');

      // Forwards: DNAT from the uplink's host ports to the instance's IPv4, tagged with its tap.
      const rules = nftRules(ns, pool.table);
      assert.ok(rules.length > 0 && rules.every((r) => r.comment === 'aein2t0'), 'our rules, each tagged with its tap');
      // Each prerouting DNAT as "<proto> <host port> -> <addr>:<port>", read from nft's JSON.
      const dnat = rules.filter((r) => r.chain === 'prerouting').flatMap((r) => {
        const expr = JSON.parse(r.text) as Array<{ match?: { left?: { payload?: { protocol: string; field: string } }; right?: unknown }; dnat?: { addr: string; port: number } }>;
        const dport = expr.find((e) => e.match?.left?.payload?.field === 'dport');
        const to = expr.find((e) => e.dnat)?.dnat;
        return dport && to ? [`${dport.match!.left!.payload!.protocol} ${String(dport.match!.right)} -> ${to.addr}:${to.port}`] : [];
      });
      assert.deepEqual(dnat.sort(), ['tcp 24100 -> 10.213.22.2:22', 'tcp 24101 -> 10.213.22.2:8080', 'udp 24101 -> 10.213.22.2:8080']);
      assert.ok(!rules.some((r) => r.text.includes('masquerade')), 'no NAT out: no internet for this instance');

      // The VM's cloud-init drive carries the lease's addresses (cloud-init's network-config v2).
      const [vmDir] = await readdir(runDir);
      const iso = join(runDir, vmDir!, 'cidata.iso');
      const networkConfig = JSON.parse(execFileSync('isoinfo', ['-R', '-i', iso, '-x', '/network-config'], { encoding: 'utf8' })) as { ethernets: { eth0: Record<string, unknown> } };
      assert.deepEqual(networkConfig.ethernets.eth0, {
        match: { driver: 'virtio_net' },
        addresses: ['10.213.22.2/30', `${expected}/124`],
        gateway4: '10.213.22.1',
        gateway6: '2001:db8:7a3f:2:3:8f3c:2a1b:e90',
        nameservers: { addresses: ['9.9.9.9', '1.1.1.1'] },
      });

      // The guest has no OS to power off on ACPI: end qemu as a crash would (the same cleanups run).
      process.kill(instance.pid!, 'SIGKILL');
      killed = true;
      assert.equal((await instance.exited).requested, false);
    } finally {
      if (!killed) process.kill(instance.pid!, 'SIGKILL');
    }

    assert.equal(nftTable(ns, pool.table), undefined, 'our nftables table is gone');
    assert.deepEqual(nftTables(ns), []);
    assert.deepEqual(ip('-o', 'link', 'show').split('\n').filter((l) => /: aein2t\d+[:@]/.test(l)), [], 'no tap');
    assert.doesNotMatch(ip('-6', 'route', 'show'), /8f3c/, 'no /124 route');
    assert.equal(ip('-6', 'neigh', 'show', 'proxy').trim(), '', 'no proxy entries');
    assert.deepEqual(await readdir(runDir), [], 'no run folder');
    // The host ports stay with the instance (its owner's ssh config names them) and its disk until erased.
    assert.deepEqual(JSON.parse(await readFile(join(netState, 'ports-aein2t.json'), 'utf8')), { [HASH]: { '22': { host: 24100, tcp: true, udp: false }, '8080': { host: 24101, tcp: true, udp: true } } });
    assert.deepEqual((await readdir(stateDir)).sort(), ['parent.qcow2', 'rootfs.qcow2']);
  });
});
