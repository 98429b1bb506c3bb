// Tap networking with an address pool, in a network namespace made by the test:
// devices are created and removed with iproute2, addresses are reused after
// release, and a node that died holding leases has them reclaimed by the next.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatIpv6, parseIpv6 } from '../../src/common/index.js';
import { executableIpv6, guestNetworkArgs, NetworkPool, networkConfigV2, parseCidr, portRequestsFromAggregate, type VmType } from '../../src/drivers/net/index.js';
import { randomBytes } from 'node:crypto';
import { findExecutable } from '../../src/drivers/vm/index.js';
import { netnsSkipReason } from './qemu-guest.js';
import { ConfigError, parseConfig } from '../../src/config/index.js';
import { nftRules, nftTable } from './vmnet-helpers.js';

describe('address pool arithmetic', () => {
  it('parses CIDRs and refuses host bits or bad prefixes', () => {
    assert.deepEqual(parseCidr('172.16.0.0/24'), { address: 0xac100000, prefix: 24 });
    assert.equal(parseCidr('172.16.0.1/24'), undefined);
    assert.equal(parseCidr('300.1.1.0/24'), undefined);
    assert.throws(() => new NetworkPool({ pool: '10.0.0.0/24', prefix: 31, tapPrefix: 'x', stateDir: '/tmp/x', outboundInterface: '' }), /between \/24 .* and \/30/);
    assert.equal(new NetworkPool({ pool: '10.0.0.0/24', prefix: 30, tapPrefix: 'x', stateDir: '/tmp/x', outboundInterface: '' }).capacity, 64);
  });
});

describe('[drivers.network] settings', () => {
  const base = '[server]\ndomain = "edge.test"\n[tls]\nmode = "internal"\n[drivers.network]\n';
  it('reads ipv6_pool and host_ports', () => {
    const settings = parseConfig(`${base}outbound_interface = "eth0"\nipv6_pool = "2001:db8:7a3e:1::/64"\nhost_ports = "30000-30999"\n`, '/c.toml');
    assert.equal(settings.drivers?.network.ipv6Pool, '2001:db8:7a3e:1::/64');
    assert.deepEqual(settings.drivers?.network.hostPorts, { min: 30000, max: 30999 });
  });
  it('refuses a pool that is not a /64, a range that is not one, and IPv6 without an uplink, with the key and line', () => {
    assert.throws(() => parseConfig(`${base}ipv6_pool = "2001:db8:7a3e:1::/56"\nhost_ports = "30000-20000"\n`, '/c.toml'), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const text = err.format();
      assert.match(text, /c\.toml:6.*drivers\.network\.ipv6_pool: "2001:db8:7a3e:1::\/56" is not an IPv6 \/64/);
      assert.match(text, /drivers\.network\.host_ports: "30000-20000" is not a port range/);
      return true;
    });
    assert.throws(() => parseConfig(`${base}ipv6_pool = "2001:db8:7a3e:1::5/64"\n`, '/c.toml'), /no host bits/);
    assert.throws(() => parseConfig(`${base}ipv6_pool = "2001:db8:7a3e:1::/64"\n`, '/c.toml'), /ipv6_pool: needs outbound_interface/);
  });
});

describe('the owner\'s port-forwarding aggregate', () => {
  const hash = 'cd'.repeat(32);
  it('reads the reference\'s shape, always with 22/tcp, skipping ports with no protocol', () => {
    assert.deepEqual(portRequestsFromAggregate({ [hash]: { ports: { '80': { tcp: true, udp: false }, '53': { tcp: true, udp: true }, '9': { tcp: false, udp: false } } }, ['ef'.repeat(32)]: { ports: { '1': { tcp: true } } } }, hash), [
      { port: 22, tcp: true, udp: false }, { port: 53, tcp: true, udp: true }, { port: 80, tcp: true, udp: false },
    ]);
    assert.deepEqual(portRequestsFromAggregate(undefined, hash), [{ port: 22, tcp: true, udp: false }]);
    assert.deepEqual(portRequestsFromAggregate({ [hash]: { ports: { '22': { tcp: false, udp: true } } } }, hash), [{ port: 22, tcp: false, udp: true }], 'the owner may change 22 itself');
  });
  it('refuses bad entries naming the field', () => {
    assert.throws(() => portRequestsFromAggregate({ [hash]: { ports: { '70000': { tcp: true } } } }, hash), new RegExp(`port-forwarding\\.${hash}\\.ports\\.70000: not a port`));
    assert.throws(() => portRequestsFromAggregate({ [hash]: { ports: { http: { tcp: true } } } }, hash), /\.ports\.http: not a port/);
    assert.throws(() => portRequestsFromAggregate({ [hash]: { ports: { '80': { tcp: 'yes' } } } }, hash), /\.ports\.80\.tcp: not a boolean/);
    assert.throws(() => portRequestsFromAggregate({ [hash]: { ports: [] } }, hash), /\.ports: not an object/);
    assert.throws(() => portRequestsFromAggregate([], hash), /port-forwarding: not an object/);
  });
});

describe('IPv6 per VM: the monitor\'s address', () => {
  // aleph-scoring's get_executable_ipv6, written again in Python with its ipaddress module
  // (an implementation independent of ours): what the network's monitor pings.
  const SCORING = [
    'import ipaddress, json, sys',
    'out = []',
    'for pool, vm_type, h in json.load(sys.stdin):',
    '    net = ipaddress.IPv6Network(pool, strict=False)',
    '    elems = net.exploded.split(":")[:4] + [str(vm_type), h[0:4], h[4:8], h[8:11] + "1"]',
    '    vm = ipaddress.IPv6Address(":".join(elems))',
    '    subnet = ipaddress.IPv6Network(str(vm) + "/124", strict=False)',
    '    out.append([str(vm), str(subnet), str(subnet.network_address)])',
    'print(json.dumps(out))',
  ].join('\n');
  const types: Array<[VmType, number]> = [['microvm', 1], ['persistent_program', 2], ['instance', 3]];

  it('matches an independent implementation of get_executable_ipv6 for random hashes and pools', { skip: findExecutable('python3') ? false : 'python3 is not installed' }, () => {
    const pools = ['2001:db8:7a3e:1::/64', '2a01:4f8:0:a0::/64', 'fd00::/64', '2001:db8:0:ff00::/64'];
    const cases = Array.from({ length: 40 }, (_, i) => {
      const [name, value] = types[i % 3]!;
      return { pool: pools[i % pools.length]!, name, value, hash: i === 0 ? '0'.repeat(64) : randomBytes(32).toString('hex') };
    });
    const python = execFileSync('python3', ['-c', SCORING], { input: JSON.stringify(cases.map((c) => [c.pool, c.value, c.hash])), encoding: 'utf8' });
    const expected = JSON.parse(python) as Array<[string, string, string]>;
    for (const [i, c] of cases.entries()) {
      const plan = executableIpv6(c.pool, c.name, c.hash);
      assert.deepEqual([plan.address, plan.network, plan.gateway], expected[i], `${c.pool} ${c.name} ${c.hash}`);
    }
  });

  it('places the VM type and 44 bits of the hash as the reference does', () => {
    const hash = 'e6ff3b83c4a2a0d4a4b4f8c92a7b1bc6e1c1a5a5d0d2b3c4e5f60718293a4b5c';
    assert.deepEqual(executableIpv6('2001:db8:1:2::/64', 'microvm', hash), {
      network: '2001:db8:1:2:1:e6ff:3b83:c4a0/124', address: '2001:db8:1:2:1:e6ff:3b83:c4a1', gateway: '2001:db8:1:2:1:e6ff:3b83:c4a0', prefix: 124,
    });
    assert.equal(executableIpv6('2001:db8:1:2::/64', 'instance', hash).address, '2001:db8:1:2:3:e6ff:3b83:c4a1');
    assert.throws(() => executableIpv6('2001:db8:1:2::/56', 'microvm', hash), /not an IPv6 \/64/);
    assert.throws(() => executableIpv6('2001:db8:1:2::1/64', 'microvm', hash), /not an IPv6 \/64/);
    assert.throws(() => executableIpv6('2001:db8:1:2::/64', 'microvm', hash.toUpperCase()), /64 lowercase hex/);
    assert.equal(formatIpv6(parseIpv6('2001:0db8:0000:0000:0001:0000:0000:0001')!), '2001:db8::1:0:0:1');
    assert.equal(parseIpv6('1::2::3'), undefined);
  });

  it('tells the guest its addresses: kernel arguments and cloud-init network-config', () => {
    const lease = { guestIp: '172.16.0.2', hostIp: '172.16.0.1', prefix: 30, ipv6: executableIpv6('2001:db8:1:2::/64', 'instance', 'ab'.repeat(32)) };
    assert.deepEqual(guestNetworkArgs(lease), ['aleph.ip=172.16.0.2/30', 'aleph.gw=172.16.0.1', 'aleph.ip6=2001:db8:1:2:3:abab:abab:aba1/124', 'aleph.gw6=2001:db8:1:2:3:abab:abab:aba0']);
    assert.deepEqual(networkConfigV2(lease, ['9.9.9.9']), {
      version: 2,
      ethernets: { eth0: { match: { driver: 'virtio_net' }, addresses: ['172.16.0.2/30', '2001:db8:1:2:3:abab:abab:aba1/124'], gateway4: '172.16.0.1', nameservers: { addresses: ['9.9.9.9'] }, gateway6: '2001:db8:1:2:3:abab:abab:aba0' } },
    });
    assert.deepEqual(guestNetworkArgs({ ...lease, ipv6: undefined }), ['aleph.ip=172.16.0.2/30', 'aleph.gw=172.16.0.1']);
  });
});

const skip = netnsSkipReason();

describe('tap devices in a network namespace', { skip: skip || false }, () => {
  const ns = `aetest-${process.pid}`;
  let stateDir: string;
  const links = (): string[] =>
    execFileSync('ip', ['-n', ns, '-o', 'link', 'show'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
      .filter((n): n is string => n !== undefined && n.startsWith('aet'));
  const addresses = (dev: string): string =>
    execFileSync('ip', ['-n', ns, '-o', '-4', 'addr', 'show', 'dev', dev], { encoding: 'utf8' });
  const pool = (extra: { outboundInterface?: string } = {}) =>
    new NetworkPool({ pool: '10.213.7.0/29', prefix: 30, tapPrefix: 'aet', stateDir, outboundInterface: extra.outboundInterface ?? '', netns: ns });

  before(async () => {
    execFileSync('ip', ['netns', 'add', ns]);
    stateDir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-net-'));
  });
  after(async () => {
    execFileSync('ip', ['netns', 'del', ns]);
    await rm(stateDir, { recursive: true, force: true });
  });

  it('creates one tap per lease with its address pair, and removes it on release', async () => {
    const p = pool();
    const a = await p.acquire('vm-a');
    const b = await p.acquire('vm-b');
    assert.deepEqual(
      [a, b].map((l) => [l.tap, l.hostIp, l.guestIp, l.prefix]),
      [
        ['aet0', '10.213.7.1', '10.213.7.2', 30],
        ['aet1', '10.213.7.5', '10.213.7.6', 30],
      ],
    );
    assert.deepEqual(links().sort(), ['aet0', 'aet1']);
    assert.match(addresses('aet0'), /inet 10\.213\.7\.1\/30/);
    assert.match(execFileSync('ip', ['-n', ns, '-d', 'link', 'show', 'aet0'], { encoding: 'utf8' }), /tun type tap/);
    await assert.rejects(p.acquire('vm-c'), /exhausted \(2 VMs\)/);

    await p.release(a);
    assert.deepEqual(links(), ['aet1']);
    const again = await p.acquire('vm-d');
    assert.equal(again.slot, 0, 'the released addresses are reused');
    assert.equal(again.guestIp, '10.213.7.2');
    await p.release(again);
    await p.release(b);
    await p.release(b); // idempotent
    assert.deepEqual(links(), []);
    assert.deepEqual(await readdir(stateDir), []);
  });

  it('reclaims the devices and addresses of a node that was killed', async () => {
    // A separate node process takes a lease, then dies by SIGKILL: no cleanup runs.
    const script = join(stateDir, '..', `aleph-edge-test-net-crash-${process.pid}.mjs`);
    const poolModule = fileURLToPath(new URL('../../src/drivers/net/index.js', import.meta.url));
    await writeFile(
      script,
      `import { NetworkPool } from ${JSON.stringify(poolModule)};
       const p = new NetworkPool({ pool: '10.213.7.0/29', prefix: 30, tapPrefix: 'aet', stateDir: ${JSON.stringify(stateDir)}, outboundInterface: '', netns: ${JSON.stringify(ns)} });
       const lease = await p.acquire('doomed');
       console.log(JSON.stringify(lease));
       process.kill(process.pid, 'SIGKILL');`,
    );
    try {
      const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c));
      const [, signal] = (await new Promise((resolve) => child.once('exit', (...a) => resolve(a)))) as [number | null, string | null];
      assert.equal(signal, 'SIGKILL');
      const crashed = JSON.parse(out) as { slot: number; tap: string };
      assert.deepEqual(links(), [crashed.tap], 'the dead node left its tap behind');
      assert.equal((await readdir(stateDir)).length, 1, 'and its lease record');

      // A stray device with our prefix and no record is removed too.
      execFileSync('ip', ['-n', ns, 'tuntap', 'add', 'dev', 'aet1', 'mode', 'tap']);

      const next = pool();
      assert.ok(nftRules(ns, next.table).some((r) => r.comment === crashed.tap), 'and its firewall rules');
      assert.deepEqual(await next.reclaim(), [0, 1]);
      assert.equal(nftTable(ns, next.table), undefined, 'the rules went with the reclaimed lease');
      assert.deepEqual(links(), []);
      assert.deepEqual(await readdir(stateDir), []);
      const lease = await next.acquire('after-crash');
      assert.equal(lease.slot, crashed.slot, 'the reclaimed addresses are handed out again');
      await next.release(lease);
    } finally {
      await rm(script, { force: true });
    }
  });

  it('leases of a live node sharing the state directory are left alone', async () => {
    const first = pool();
    const held = await first.acquire('kept');
    const second = pool();
    assert.deepEqual(await second.reclaim(), [], 'records of a live process are not stale');
    const other = await second.acquire('other');
    assert.notEqual(other.slot, held.slot);
    await second.release(other);
    await first.release(held);
    assert.deepEqual(links(), []);
  });

  it('adds NAT only for leases that ask for internet access, in our own nftables table only', { skip: findExecutable('nft') ? false : 'nft is not installed (.ci/setup.d/vmnet.sh)' }, async () => {
    execFileSync('ip', ['-n', ns, 'tuntap', 'add', 'dev', 'aeup0', 'mode', 'tun']); // stands in for the uplink
    // The operator's own table and rule, there before us: never flushed, never changed.
    execFileSync('ip', ['netns', 'exec', ns, 'nft', 'add table inet operator; add chain inet operator passthrough { type filter hook forward priority 10; policy accept; }; add rule inet operator passthrough iifname "eth9" counter accept comment "theirs"']);
    const operator = () => execFileSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'inet', 'operator'], { encoding: 'utf8' });
    const theirs = operator();
    try {
      const p = pool({ outboundInterface: 'aeup0' });
      const open = await p.acquire('with-internet', { internet: true });
      const closed = await p.acquire('offline');
      const rules = nftRules(ns, p.table);
      const masquerades = rules.filter((r) => r.chain === 'postrouting' && r.text.includes('masquerade'));
      assert.deepEqual(masquerades.map((r) => r.comment), [open.tap], 'one masquerade, for the lease with internet');
      assert.match(masquerades[0]!.text, new RegExp(`"saddr"}},"right":"${open.guestIp.replaceAll('.', '\\.')}"`));
      assert.ok(rules.some((r) => r.comment === open.tap && r.chain === 'forward' && r.text.includes('"aeup0"') && r.text.includes('"accept"')), 'forwarded out through the uplink');
      assert.ok(rules.some((r) => r.comment === closed.tap && r.chain === 'forward' && r.text.includes('"drop"')), 'the offline tap is dropped');
      assert.ok(!rules.some((r) => r.comment === closed.tap && r.text.includes('"aeup0"')), 'and has no way out');
      await p.release(open);
      assert.ok(nftRules(ns, p.table).every((r) => r.comment === closed.tap), 'only the released lease\'s rules went');
      await p.release(closed);
      assert.equal(nftTable(ns, p.table), undefined, 'our table goes with the last lease');
      assert.equal(operator(), theirs);
      await assert.rejects(pool().acquire('no-egress', { internet: true }), /outbound_interface is not set/);
    } finally {
      execFileSync('ip', ['-n', ns, 'link', 'del', 'aeup0']);
      execFileSync('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'inet', 'operator']);
    }
  });
});
