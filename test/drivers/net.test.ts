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
import { NetworkPool, parseCidr } from '../../src/drivers/net/index.js';
import { findExecutable } from '../../src/drivers/qemu/checks.js';
import { netnsSkipReason } from './qemu-guest.js';

describe('address pool arithmetic', () => {
  it('parses CIDRs and refuses host bits or bad prefixes', () => {
    assert.deepEqual(parseCidr('172.16.0.0/24'), { address: 0xac100000, prefix: 24 });
    assert.equal(parseCidr('172.16.0.1/24'), undefined);
    assert.equal(parseCidr('300.1.1.0/24'), undefined);
    assert.throws(() => new NetworkPool({ pool: '10.0.0.0/24', prefix: 31, tapPrefix: 'x', stateDir: '/tmp/x', outboundInterface: '' }), /between \/24 .* and \/30/);
    assert.equal(new NetworkPool({ pool: '10.0.0.0/24', prefix: 30, tapPrefix: 'x', stateDir: '/tmp/x', outboundInterface: '' }).capacity, 64);
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
      assert.deepEqual(await next.reclaim(), [0, 1]);
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

  it('adds NAT only for leases that ask for internet access', { skip: findExecutable('iptables') ? false : 'iptables is not installed' }, async () => {
    execFileSync('ip', ['-n', ns, 'tuntap', 'add', 'dev', 'aeup0', 'mode', 'tun']); // stands in for the uplink
    try {
      const p = pool({ outboundInterface: 'aeup0' });
      const open = await p.acquire('with-internet', { internet: true });
      const closed = await p.acquire('offline');
      const nat = execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-w', '-t', 'nat', '-S', 'POSTROUTING'], { encoding: 'utf8' });
      assert.match(nat, new RegExp(`-s ${open.guestIp.replaceAll('.', '\\.')}/32 -o aeup0 -j MASQUERADE`));
      assert.doesNotMatch(nat, new RegExp(closed.guestIp.replaceAll('.', '\\.')));
      const forward = execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-w', '-S', 'FORWARD'], { encoding: 'utf8' });
      assert.match(forward, new RegExp(`-i ${closed.tap} -j DROP`));
      await p.release(open);
      await p.release(closed);
      const natAfter = execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-w', '-t', 'nat', '-S', 'POSTROUTING'], { encoding: 'utf8' });
      assert.doesNotMatch(natAfter, /MASQUERADE/);
      assert.doesNotMatch(execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-w', '-S', 'FORWARD'], { encoding: 'utf8' }), /aet/);
      await assert.rejects(pool().acquire('no-egress', { internet: true }), /outbound_interface is not set/);
    } finally {
      execFileSync('ip', ['-n', ns, 'link', 'del', 'aeup0']);
    }
  });
});
