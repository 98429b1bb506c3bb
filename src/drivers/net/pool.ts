// Tap networking for VM drivers: one tap device per VM, with a host/guest address
// pair carved from a configured IPv4 pool (e.g. 172.16.0.0/24 split in /30s).
// Devices are made and removed with iproute2. Each lease is also recorded in a
// state directory (one JSON file per slot, with the owning node's pid), so a node
// that crashed leaves enough behind for the next one to reclaim its devices and
// addresses. Outbound internet (NAT) only for leases that ask for it.

import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface NetworkPoolOptions {
  /** IPv4 pool in CIDR notation, e.g. "172.16.0.0/24". */
  pool: string;
  /** Prefix length of each VM's subnet (30: host .1, guest .2 of each block of 4). */
  prefix: number;
  /** Tap device names are <tapPrefix><slot>; at most 15 characters in total. */
  tapPrefix: string;
  /** Where leases are recorded for crash recovery. */
  stateDir: string;
  /** Host interface for NAT (leases with internet); '' = no NAT possible. */
  outboundInterface: string;
  /** Run every command in this network namespace ('' = the node's own). */
  netns?: string;
}

export interface Lease {
  slot: number;
  tap: string;
  hostIp: string; // gateway address on the tap
  guestIp: string;
  prefix: number;
  internet: boolean;
  owner: string; // e.g. the execution id
}

interface LeaseRecord extends Lease {
  pid: number; // the node process that holds the lease
}

export class NetworkPool {
  private readonly base: number;
  private readonly slots: number;
  private readonly held = new Map<number, Lease>();
  private reclaimed: Promise<number[]> | undefined;
  private lock: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: NetworkPoolOptions) {
    const parsed = parseCidr(options.pool);
    if (!parsed) throw new Error(`network pool ${JSON.stringify(options.pool)} is not an IPv4 CIDR like 172.16.0.0/24`);
    if (!Number.isInteger(options.prefix) || options.prefix < parsed.prefix || options.prefix > 30) {
      throw new Error(`per-VM prefix /${options.prefix} must be between /${parsed.prefix} (the pool) and /30`);
    }
    if (!/^[a-zA-Z][a-zA-Z0-9-]{0,9}$/.test(options.tapPrefix)) throw new Error(`tap prefix ${JSON.stringify(options.tapPrefix)}: 1-10 letters, digits or '-'`);
    this.base = parsed.address;
    this.slots = 2 ** (options.prefix - parsed.prefix);
  }

  get capacity(): number {
    return this.slots;
  }

  /** Leases held by this process. */
  leases(): Lease[] {
    return [...this.held.values()];
  }

  /**
   * Removes devices and records left by a node that is no longer running (crash,
   * SIGKILL) and tap devices with our prefix that no record explains. Runs once
   * before the first acquire; returns the slots it freed.
   */
  reclaim(): Promise<number[]> {
    this.reclaimed ??= this.serial(() => this.reclaimStale());
    return this.reclaimed;
  }

  /**
   * `tapOwner`: the uid/gid the tap device is made for (`ip tuntap ... user U group G`),
   * so an unprivileged VMM (a jailed Firecracker has no CAP_NET_ADMIN) may open it.
   */
  async acquire(owner: string, options: { internet?: boolean; tapOwner?: { uid: number; gid: number } } = {}): Promise<Lease> {
    await this.reclaim();
    return this.serial(async () => {
      const taken = new Set([...this.held.keys(), ...(await this.recordedSlots())]);
      let slot = -1;
      for (let i = 0; i < this.slots; i++) {
        if (!taken.has(i)) {
          slot = i;
          break;
        }
      }
      if (slot === -1) throw new Error(`network pool ${this.options.pool} is exhausted (${this.slots} VMs)`);
      const internet = options.internet === true;
      if (internet && this.options.outboundInterface === '') {
        throw new Error('the program asks for internet access but [drivers.network] outbound_interface is not set');
      }
      const first = this.base + slot * 2 ** (32 - this.options.prefix);
      const lease: Lease = {
        slot,
        tap: `${this.options.tapPrefix}${slot}`,
        hostIp: formatIp(first + 1),
        guestIp: formatIp(first + 2),
        prefix: this.options.prefix,
        internet,
        owner,
      };
      // Record first: a crash between here and the device's creation is then reclaimable.
      await this.writeRecord(lease);
      this.held.set(slot, lease);
      try {
        await this.deleteTap(lease.tap); // a leftover with the same name
        const tapOwner = options.tapOwner ? ['user', String(options.tapOwner.uid), 'group', String(options.tapOwner.gid)] : [];
        await this.ip('tuntap', 'add', 'dev', lease.tap, 'mode', 'tap', ...tapOwner);
        await this.ip('addr', 'add', `${lease.hostIp}/${lease.prefix}`, 'dev', lease.tap);
        await this.ip('link', 'set', lease.tap, 'up');
        await this.firewall('add', lease);
      } catch (err) {
        await this.teardown(lease).catch(() => {});
        throw err;
      }
      return lease;
    });
  }

  /** Removes the tap and firewall rules and returns the addresses to the pool. Idempotent. */
  release(lease: Lease): Promise<void> {
    return this.serial(() => this.teardown(lease));
  }

  private async teardown(lease: Lease): Promise<void> {
    await this.firewall('delete', lease).catch(() => {});
    await this.deleteTap(lease.tap);
    await rm(this.recordPath(lease.slot), { force: true });
    this.held.delete(lease.slot);
  }

  private async reclaimStale(): Promise<number[]> {
    await mkdir(this.options.stateDir, { recursive: true, mode: 0o700 });
    const freed: number[] = [];
    const recorded = new Set<string>();
    for (const record of await this.readRecords()) {
      if (pidAlive(record.pid)) {
        recorded.add(record.tap);
        continue; // a live node (this one, or another sharing the directory) owns it
      }
      await this.firewall('delete', record).catch(() => {});
      await this.deleteTap(record.tap);
      await rm(this.recordPath(record.slot), { force: true });
      freed.push(record.slot);
    }
    // Devices with our prefix that no live record explains.
    for (const name of await this.tapDevices()) {
      const slot = Number(name.slice(this.options.tapPrefix.length));
      if (!recorded.has(name) && !this.held.has(slot)) {
        await this.deleteTap(name);
        if (!freed.includes(slot)) freed.push(slot);
      }
    }
    return freed.sort((a, b) => a - b);
  }

  /** Tap devices named <tapPrefix><digits>. */
  async tapDevices(): Promise<string[]> {
    const { stdout } = await this.ip('-o', 'link', 'show');
    const names: string[] = [];
    const pattern = new RegExp(`^\\d+: (${escapeRegExp(this.options.tapPrefix)}\\d+)[@:]`);
    for (const line of stdout.split('\n')) {
      const match = pattern.exec(line);
      if (match) names.push(match[1]!);
    }
    return names;
  }

  private async deleteTap(name: string): Promise<void> {
    try {
      await this.ip('link', 'del', name);
    } catch (err) {
      const text = String((err as { stderr?: string }).stderr ?? (err as Error).message);
      if (!/Cannot find device|does not exist/i.test(text)) throw err;
    }
  }

  // NAT for leases with internet; without it, traffic from the tap is not forwarded.
  private async firewall(action: 'add' | 'delete', lease: Lease): Promise<void> {
    const flag = action === 'add' ? '-A' : '-D';
    if (lease.internet) {
      await this.iptables('-t', 'nat', flag, 'POSTROUTING', '-s', `${lease.guestIp}/32`, '-o', this.options.outboundInterface, '-j', 'MASQUERADE');
      await this.iptables(flag, 'FORWARD', '-i', lease.tap, '-o', this.options.outboundInterface, '-j', 'ACCEPT');
      await this.iptables(flag, 'FORWARD', '-o', lease.tap, '-m', 'state', '--state', 'ESTABLISHED,RELATED', '-j', 'ACCEPT');
    } else if (action === 'add') {
      await this.iptables('-A', 'FORWARD', '-i', lease.tap, '-j', 'DROP').catch(() => {}); // best effort: iptables may be absent
    } else {
      await this.iptables('-D', 'FORWARD', '-i', lease.tap, '-j', 'DROP');
    }
  }

  private ip(...args: string[]): Promise<{ stdout: string }> {
    const netns = this.options.netns ? ['-n', this.options.netns] : [];
    return run('ip', [...netns, ...args]);
  }

  private iptables(...args: string[]): Promise<{ stdout: string }> {
    if (this.options.netns) return run('ip', ['netns', 'exec', this.options.netns, 'iptables', '-w', ...args]);
    return run('iptables', ['-w', ...args]);
  }

  private recordPath(slot: number): string {
    return join(this.options.stateDir, `${this.options.tapPrefix}${slot}.json`);
  }

  private async writeRecord(lease: Lease): Promise<void> {
    await mkdir(this.options.stateDir, { recursive: true, mode: 0o700 });
    const record: LeaseRecord = { ...lease, pid: process.pid };
    await writeFile(this.recordPath(lease.slot), JSON.stringify(record) + '\n', { mode: 0o600 });
  }

  private async readRecords(): Promise<LeaseRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.options.stateDir);
    } catch {
      return [];
    }
    const records: LeaseRecord[] = [];
    for (const name of names) {
      if (!name.startsWith(this.options.tapPrefix) || !name.endsWith('.json')) continue;
      try {
        const record = JSON.parse(await readFile(join(this.options.stateDir, name), 'utf8')) as LeaseRecord;
        if (Number.isInteger(record.slot) && record.slot >= 0 && record.slot < this.slots) records.push(record);
      } catch {
        await rm(join(this.options.stateDir, name), { force: true }); // unreadable: half-written before a crash
      }
    }
    return records;
  }

  /** Slots recorded by live nodes (another node sharing the state directory). */
  private async recordedSlots(): Promise<number[]> {
    return (await this.readRecords()).filter((r) => r.pid === process.pid || pidAlive(r.pid)).map((r) => r.slot);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => {});
    return next;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function parseCidr(text: string): { address: number; prefix: number } | undefined {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(text);
  if (!match) return undefined;
  const octets = match.slice(1, 5).map(Number);
  const prefix = Number(match[5]);
  if (octets.some((o) => o > 255) || prefix > 32) return undefined;
  const address = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if ((address & mask) >>> 0 !== address) return undefined; // host bits set
  return { address, prefix };
}

function formatIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
