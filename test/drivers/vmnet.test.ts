// VM networking with real parts, in two network namespaces the test makes: "node"
// (taps, our nftables table, the NDP proxy, qemu) and "outside" (a host on the same
// link as the node's uplink, with the whole /64 on-link, as a provider's router sees
// it). A guest booted by the qemu driver under TCG answers ping6 from outside at the
// address the network's monitor computes (aleph-scoring's formula, in Python), a
// host port forward on the tap path reaches its HTTP port, and after stop nothing of
// ours is left: no rules, taps, routes or proxy entries; the operator's table is as it was.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setLogLevel } from '../../src/common/index.js';
import { NetworkPool } from '../../src/drivers/net/index.js';
import { QemuDriver } from '../../src/drivers/qemu/index.js';
import { findExecutable } from '../../src/drivers/vm/index.js';
import { until } from '../helpers/node.js';
import { makeProgram, nextSlot } from './helpers.js';
import { guestSetup, netnsSkipReason, processesWith, qemuSkipReason, writeGuestProgram, type GuestSetup } from './qemu-guest.js';
import { monitorAddress, nftRules, nftTable, nftTables } from './vmnet-helpers.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');

const POOL6 = '2001:db8:7a3e:1::/64';
const NODE_V4 = '192.0.2.1';

function skipReason(): string {
  const reason = qemuSkipReason() || netnsSkipReason();
  if (reason) return reason;
  for (const tool of ['nft', 'ping', 'python3']) if (!findExecutable(tool)) return `${tool} is not installed (.ci/setup.d/vmnet.sh)`;
  return '';
}

describe('VM networking: a qemu guest on a tap, seen from another namespace', { skip: skipReason() || false, timeout: 240_000 }, () => {
  const node = `aev${process.pid}n`;
  const outside = `aev${process.pid}o`;
  let guest: GuestSetup;
  let code: string;
  const inNs = (ns: string, ...args: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8' });
  const ip = (ns: string, ...args: string[]) => execFileSync('ip', ['-n', ns, ...args], { encoding: 'utf8' });

  before(async () => {
    guest = await guestSetup();
    code = await writeGuestProgram(guest.dir);
    execFileSync('ip', ['netns', 'add', node]);
    execFileSync('ip', ['netns', 'add', outside]);
    ip(node, 'link', 'add', 'aevup', 'type', 'veth', 'peer', 'name', 'aevout', 'netns', outside);
    for (const [ns, dev, v4, v6] of [[node, 'aevup', `${NODE_V4}/24`, '2001:db8:7a3e:1::100/64'], [outside, 'aevout', '192.0.2.2/24', '2001:db8:7a3e:1::fe/64']] as const) {
      ip(ns, 'link', 'set', 'lo', 'up');
      ip(ns, 'addr', 'add', v4, 'dev', dev);
      ip(ns, '-6', 'addr', 'add', v6, 'dev', dev, 'nodad');
      ip(ns, 'link', 'set', dev, 'up');
    }
    // The operator's own nftables table, there before the node: it must come out untouched.
    inNs(node, 'nft', 'add table ip operator; add chain ip operator post { type nat hook postrouting priority 50; policy accept; }; add rule ip operator post ip saddr 198.51.100.0/24 counter masquerade comment "theirs"');
  });

  after(async () => {
    if (!guest) return;
    for (const pid of processesWith(guest.dir)) process.kill(pid, 'SIGKILL');
    for (const ns of [node, outside]) spawnSync('ip', ['netns', 'del', ns]);
    await rm(guest.dir, { recursive: true, force: true });
  });

  it('answers ping6 at the monitor\'s address through the NDP proxy, forwards a host port to the guest, and leaves nothing behind', async (t) => {
    const stateDir = join(guest.dir, 'net');
    const runDir = join(guest.dir, 'vms');
    // qemu must open the tap in the node's namespace: the driver runs it through this wrapper.
    const wrapper = join(guest.dir, 'qemu-in-netns');
    await writeFile(wrapper, `#!/bin/sh\nexec ip netns exec ${node} qemu-system-x86_64 "$@"\n`);
    await chmod(wrapper, 0o755);
    const operatorBefore = inNs(node, 'nft', 'list', 'table', 'ip', 'operator');

    const pool = new NetworkPool({
      pool: '10.213.21.0/30', prefix: 30, tapPrefix: 'aevq', stateDir, outboundInterface: 'aevup', netns: node,
      ipv6Pool: POOL6, hostPorts: { min: 24000, max: 24009 },
    });
    const driver = new QemuDriver({ stopGraceMs: 3000, binary: wrapper, kernel: guest.kernel.vmlinuz, initramfs: guest.initramfs, machine: 'auto', accel: 'tcg', network: 'tap', runDir, pool });
    const program = makeProgram([]);
    program.hash = 'e6ff3b83c4a2a0d4a4b4f8c92a7b1bc6e1c1a5a5d0d2b3c4e5f60718293a4b5c';
    program.launch = { kind: 'vm', code, entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false };
    const expected = monitorAddress(POOL6, program.hash);
    assert.equal(expected, '2001:db8:7a3e:1:1:e6ff:3b83:c4a1');

    const slot = nextSlot();
    const instance = await driver.start(program, slot);
    try {
      assert.equal(instance.network?.ipv6, expected, 'the VM is given the monitor\'s address');
      assert.equal(instance.network?.ipv6Network, '2001:db8:7a3e:1:1:e6ff:3b83:c4a0/124');
      assert.equal(instance.network?.hostIpv4, NODE_V4, 'the uplink address, where forwarded ports are reached');
      const lease = pool.leases().find((l) => l.owner === slot.executionId)!;
      assert.match(ip(node, '-6', 'route', 'show', 'dev', lease.tap), /^2001:db8:7a3e:1:1:e6ff:3b83:c4a0\/124 /m, 'the /124 is routed to the tap');
      assert.match(ip(node, '-6', 'neigh', 'show', 'proxy', 'dev', 'aevup'), new RegExp(`^${expected} `, 'm'));

      // From outside: the /64 is on-link there, so it asks the link who has the address; the node answers for the VM.
      const ping = () => spawnSync('ip', ['netns', 'exec', outside, 'ping', '-6', '-c', '1', '-W', '2', expected], { encoding: 'utf8' });
      await until(() => ping().status === 0, 90_000, `ping6 ${expected} from the other namespace`);
      assert.match(ip(outside, '-6', 'neigh', 'show', expected), /lladdr/, 'resolved by neighbour discovery (the proxy)');
      const uplinkMac = ip(node, 'link', 'show', 'aevup').match(/link\/ether (\S+)/)![1];
      assert.match(ip(outside, '-6', 'neigh', 'show', expected), new RegExp(`lladdr ${uplinkMac}`), 'answered with the node\'s uplink address');

      // Port forwarding on the tap path: a host port on the node's uplink address reaches the guest's :8080.
      const ports = await pool.updatePorts(lease, [{ port: 8080, tcp: true, udp: false }]);
      assert.deepEqual(ports, { '8080': { host: 24000, tcp: true, udp: false } });
      // An HTTP client in the other namespace (node itself; the host's static busybox wget cannot resolve here).
      const client = 'fetch(process.argv[1], { signal: AbortSignal.timeout(5000) }).then((r) => r.text()).then((t) => process.stdout.write(t), () => process.exit(1))';
      const fetch = (url: string) => spawnSync('ip', ['netns', 'exec', outside, process.execPath, '-e', client, url], { encoding: 'utf8' });
      let body = '';
      await until(() => (body = fetch(`http://${NODE_V4}:24000/index.html`).stdout) !== '', 60_000, 'the forwarded port to answer');
      assert.equal(body, 'hello from the guest\n');
      assert.equal(fetch(`http://[${expected}]:8080/index.html`).stdout, 'hello from the guest\n', 'and over IPv6, directly');
      assert.notEqual(fetch(`http://${NODE_V4}:24001/index.html`).status, 0, 'no other host port leads anywhere');

      const rules = nftRules(node, pool.table);
      assert.ok(rules.length > 0 && rules.every((r) => r.comment === lease.tap), 'our rules, each tagged with its tap');
      assert.ok(rules.some((r) => r.chain === 'prerouting' && r.text.includes('"dnat"') && r.text.includes('24000')));
      assert.ok(!rules.some((r) => r.text.includes('masquerade')), 'no NAT out: the program has no internet');
    } finally {
      await instance.stop();
    }
    assert.equal((await instance.exited).requested, true);

    // Nothing of ours remains; the operator's table is unchanged.
    assert.equal(nftTable(node, pool.table), undefined, 'our nftables table is gone');
    assert.deepEqual(nftTables(node), ['ip operator']);
    assert.equal(inNs(node, 'nft', 'list', 'table', 'ip', 'operator'), operatorBefore);
    assert.deepEqual(ip(node, '-o', 'link', 'show').split('\n').filter((l) => /: aevq\d+[:@]/.test(l)), [], 'no tap');
    assert.doesNotMatch(ip(node, '-6', 'route', 'show'), /e6ff/, 'no /124 route');
    assert.equal(ip(node, '-6', 'neigh', 'show', 'proxy').trim(), '', 'no proxy entries');
    assert.deepEqual(await readdir(runDir), []);
    // The host port stays with the VM (its owner's ssh config names it) across stops and node restarts.
    assert.deepEqual(await readdir(stateDir), ['ports-aevq.json']);
    assert.deepEqual(JSON.parse(await readFile(join(stateDir, 'ports-aevq.json'), 'utf8')), { [program.hash]: { '8080': { host: 24000, tcp: true, udp: false } } });
    t.diagnostic(`ping6 ${expected} answered from the other namespace`);
  });
});

describe('port forwards across node restarts', { skip: netnsSkipReason() || (findExecutable('nft') ? false : 'nft is not installed') || false }, () => {
  const ns = `aev${process.pid}p`;
  let dir: string;
  before(async () => {
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'add', 'aevup', 'type', 'veth', 'peer', 'name', 'aevpeer']);
    dir = join(process.env.TMPDIR ?? '/tmp', `aleph-edge-test-vmnet-${process.pid}`);
    await mkdir(dir, { recursive: true });
  });
  after(async () => {
    spawnSync('ip', ['netns', 'del', ns]);
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps a VM\'s host ports for a new node, drops unrequested ones, refuses bad lists, forgets on erase', async () => {
    const pool = () => new NetworkPool({ pool: '10.213.22.0/29', prefix: 30, tapPrefix: 'aevp', stateDir: dir, outboundInterface: 'aevup', netns: ns, hostPorts: { min: 24100, max: 24102 } });
    const a = 'a1'.repeat(32);
    const b = 'b2'.repeat(32);
    const first = pool();
    const la = await first.acquire('a', { hash: a, vmType: 'instance', ports: [{ port: 22, tcp: true, udp: false }, { port: 53, tcp: false, udp: true }] });
    assert.deepEqual(la.ports, { '22': { host: 24100, tcp: true, udp: false }, '53': { host: 24101, tcp: false, udp: true } });
    const udp = nftRules(ns, first.table).filter((r) => r.chain === 'prerouting');
    assert.equal(udp.length, 2);
    assert.ok(udp.some((r) => r.text.includes('"udp"') && r.text.includes('24101')) && udp.some((r) => r.text.includes('"tcp"') && r.text.includes('24100')));
    await first.release(la);
    assert.equal(nftTable(ns, first.table), undefined);

    // Another node process (same state directory) starts the VM again: same host ports.
    const second = pool();
    const again = await second.acquire('a-again', { hash: a, vmType: 'instance', ports: [{ port: 22, tcp: true, udp: false }] });
    assert.deepEqual(again.ports, { '22': { host: 24100, tcp: true, udp: false } }, 'port 22 kept its host port; 53 was dropped');
    const other = await second.acquire('b', { hash: b, vmType: 'instance', ports: [{ port: 22, tcp: true, udp: false }, { port: 80, tcp: true, udp: false }] });
    assert.deepEqual(other.ports, { '22': { host: 24101, tcp: true, udp: false }, '80': { host: 24102, tcp: true, udp: false } });
    await assert.rejects(second.updatePorts(again, [{ port: 22, tcp: true, udp: false }, { port: 443, tcp: true, udp: false }]), /no free host port left in 24100-24102/);
    await assert.rejects(second.updatePorts(again, [{ port: 70000, tcp: true, udp: false }]), /ports\[0\]\.port: 70000 is not a port/);
    await assert.rejects(second.updatePorts(again, [{ port: 22, tcp: false, udp: false }]), /forwards neither tcp nor udp/);
    assert.deepEqual(again.ports, { '22': { host: 24100, tcp: true, udp: false } }, 'a refused change leaves the forwards as they were');
    await second.release(again);
    await second.release(other);
    await second.forgetPorts(b);
    const third = pool();
    const reborn = await third.acquire('b-again', { hash: b, ports: [{ port: 80, tcp: true, udp: false }] });
    assert.deepEqual(reborn.ports, { '80': { host: 24101, tcp: true, udp: false } }, 'an erased VM starts afresh');
    await third.release(reborn);
    assert.deepEqual(nftTables(ns), []);
  });
});
