// Tap networking for VM drivers: one tap device per VM, with a host/guest address
// pair carved from a configured IPv4 pool (e.g. 172.16.0.0/24 split in /30s), the
// VM's IPv6 /124 from the node's /64 (ipv6.ts) with NDP proxy entries on the uplink,
// and host ports forwarded to VM ports (ports.ts). Devices, addresses and proxy
// entries are made and removed with iproute2, firewall and NAT rules in our own
// nftables table (nft.ts). Each lease is also recorded in a state directory (one
// JSON file per slot, with the owning node's pid), so a node that crashed leaves
// enough behind for the next one to reclaim its devices, rules and addresses.
// Outbound internet (NAT) only for leases that ask for it. docs/networking.md.

import { execFile, spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseIpv6Slash64 } from '../../common/index.js';
import { executableIpv6, vmAddresses, type Ipv6Plan, type VmType } from './ipv6.js';
import { Nftables, type Protocol } from './nft.js';
import { PortMap, type MappedPorts, type PortRange, type PortRequest } from './ports.js';

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
  /** The node's IPv6 /64 (VMs get a /124 of it, see ipv6.ts); '' or absent = no IPv6 for VMs. Needs outboundInterface. */
  ipv6Pool?: string;
  /** Host ports handed out for port forwards (default 24000-65535, as the reference). */
  hostPorts?: PortRange;
}

export interface AcquireOptions {
  internet?: boolean;
  /**
   * The uid/gid the tap device is made for (`ip tuntap ... user U group G`), so an
   * unprivileged VMM (a jailed Firecracker has no CAP_NET_ADMIN) may open it.
   */
  tapOwner?: { uid: number; gid: number };
  /** The program's or instance's item hash: names its IPv6 /124 and its port forwards. */
  hash?: string;
  /** For the IPv6 address (default microvm, a program). */
  vmType?: VmType;
  /** VM ports to forward from host ports (needs hash: the host ports are kept per hash). */
  ports?: PortRequest[];
}

/** One VM's network, as data: what a driver gives qemu and the guest (kernel arguments, cloud-init). */
export interface Lease {
  slot: number;
  tap: string;
  hostIp: string; // gateway address on the tap
  guestIp: string;
  prefix: number;
  /** The VM's IPv4 subnet, e.g. "172.16.0.4/30". */
  network: string;
  internet: boolean;
  owner: string; // e.g. the execution id
  hash?: string;
  /** Absent when the node has no ipv6_pool, no hash was given, or another live VM holds this /124. */
  ipv6?: Ipv6Plan;
  /** VM port -> host port (the reference's mapped_ports); empty without forwards. */
  ports: MappedPorts;
  /** The uplink (outbound_interface) when the lease was made: NAT and NDP proxy entries are on it. */
  uplink: string;
  /** The uplink's IPv4 address (where forwarded host ports are reached), if it has one. */
  uplinkIpv4?: string;
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
  private readonly nft: Nftables;
  private readonly portMap: PortMap;

  constructor(private readonly options: NetworkPoolOptions) {
    const parsed = parseCidr(options.pool);
    if (!parsed) throw new Error(`network pool ${JSON.stringify(options.pool)} is not an IPv4 CIDR like 172.16.0.0/24`);
    if (!Number.isInteger(options.prefix) || options.prefix < parsed.prefix || options.prefix > 30) {
      throw new Error(`per-VM prefix /${options.prefix} must be between /${parsed.prefix} (the pool) and /30`);
    }
    if (!/^[a-zA-Z][a-zA-Z0-9-]{0,9}$/.test(options.tapPrefix)) throw new Error(`tap prefix ${JSON.stringify(options.tapPrefix)}: 1-10 letters, digits or '-'`);
    this.base = parsed.address;
    this.slots = 2 ** (options.prefix - parsed.prefix);
    if (options.ipv6Pool) {
      if (parseIpv6Slash64(options.ipv6Pool) === undefined) throw new Error(`ipv6_pool ${JSON.stringify(options.ipv6Pool)} is not an IPv6 /64 like 2001:db8:1:2::/64`);
      if (options.outboundInterface === '') throw new Error('ipv6_pool needs outbound_interface: the NDP proxy answers for the VMs there');
    }
    const range = options.hostPorts ?? DEFAULT_HOST_PORTS;
    if (!Number.isInteger(range.min) || !Number.isInteger(range.max) || range.min < 1 || range.max > 65535 || range.min > range.max) {
      throw new Error(`host port range ${range.min}-${range.max} is not within 1-65535`);
    }
    // One table per pool (its tap prefix is unique on the host): pools never touch each other's rules.
    this.nft = new Nftables(`aleph_edge_${options.tapPrefix}`, options.netns ?? '');
    this.portMap = new PortMap(join(options.stateDir, `ports-${options.tapPrefix}.json`), range, !options.netns);
  }

  /** Our nftables table (inet family). */
  get table(): string {
    return this.nft.table;
  }

  /** The host ports a VM keeps (until forgetPorts). */
  mappedPorts(hash: string): Promise<MappedPorts> {
    return this.serial(() => this.portMap.get(hash));
  }

  /** Forgets a VM's host ports (its owner erased it); its forwards must be released first. */
  forgetPorts(hash: string): Promise<void> {
    return this.serial(() => this.portMap.forget(hash));
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

  /** A tap, addresses and rules for one VM (see AcquireOptions). */
  async acquire(owner: string, options: AcquireOptions = {}): Promise<Lease> {
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
      if (options.ports && options.ports.length > 0 && !options.hash) throw new Error('port forwards need the VM\'s hash (host ports are kept per VM)');
      const first = this.base + slot * 2 ** (32 - this.options.prefix);
      let ipv6: Ipv6Plan | undefined;
      if (this.options.ipv6Pool && options.hash && /^[0-9a-f]{64}$/.test(options.hash)) {
        const plan = executableIpv6(this.options.ipv6Pool, options.vmType ?? 'microvm', options.hash);
        // Two executions of one program overlap while the old one drains: the /124 stays with the first.
        if (![...this.held.values()].some((l) => l.ipv6?.network === plan.network)) ipv6 = plan;
      }
      const ports = options.hash && options.ports ? await this.portMap.assign(options.hash, options.ports) : {};
      const lease: Lease = {
        slot,
        tap: `${this.options.tapPrefix}${slot}`,
        hostIp: formatIp(first + 1),
        guestIp: formatIp(first + 2),
        prefix: this.options.prefix,
        network: `${formatIp(first)}/${this.options.prefix}`,
        internet,
        owner,
        ...(options.hash ? { hash: options.hash } : {}),
        ...(ipv6 ? { ipv6 } : {}),
        ports,
        uplink: this.options.outboundInterface,
      };
      const uplinkIpv4 = await this.uplinkIpv4();
      if (uplinkIpv4) lease.uplinkIpv4 = uplinkIpv4;
      // Record first: a crash between here and the device's creation is then reclaimable.
      await this.writeRecord(lease);
      this.held.set(slot, lease);
      try {
        await this.deleteTap(lease.tap); // a leftover with the same name
        const tapOwner = options.tapOwner ? ['user', String(options.tapOwner.uid), 'group', String(options.tapOwner.gid)] : [];
        await this.ip('tuntap', 'add', 'dev', lease.tap, 'mode', 'tap', ...tapOwner);
        await this.ip('addr', 'add', `${lease.hostIp}/${lease.prefix}`, 'dev', lease.tap);
        // nodad: the gateway address is usable at once (the tap has no carrier until the VMM opens it).
        if (lease.ipv6) await this.ip('-6', 'addr', 'add', `${lease.ipv6.gateway}/${lease.ipv6.prefix}`, 'dev', lease.tap, 'nodad');
        await this.ip('link', 'set', lease.tap, 'up');
        await this.enableForwarding(lease);
        await this.nft.replaceVm(firewallOf(lease)); // replaces any rules a failed teardown left for this tap
        if (lease.ipv6) await this.proxyNdp('add', lease);
      } catch (err) {
        await this.teardown(lease).catch(() => {});
        throw err;
      }
      return lease;
    });
  }

  /**
   * Changes a held lease's port forwards (the owner's port-forwarding settings changed):
   * VM ports it keeps keep their host ports. Returns the new mapping (also in lease.ports).
   */
  updatePorts(lease: Lease, requests: PortRequest[]): Promise<MappedPorts> {
    return this.serial(async () => {
      if (this.held.get(lease.slot) !== lease) throw new Error(`${lease.tap} is not a lease held by this pool`);
      if (!lease.hash) throw new Error('port forwards need the VM\'s hash (host ports are kept per VM)');
      const ports = await this.portMap.assign(lease.hash, requests);
      try {
        if (Object.keys(ports).length > 0) await this.sysctl('/proc/sys/net/ipv4/ip_forward', '1');
        await this.nft.replaceVm(firewallOf({ ...lease, ports }));
      } catch (err) {
        // The rules are as they were: so is the map (same VM ports, same host ports).
        await this.portMap.assign(lease.hash, requestsOf(lease.ports)).catch(() => {});
        throw err;
      }
      lease.ports = ports;
      await this.writeRecord(lease);
      return lease.ports;
    });
  }

  /** Removes the tap and firewall rules and returns the addresses to the pool. Idempotent. */
  release(lease: Lease): Promise<void> {
    return this.serial(() => this.teardown(lease));
  }

  /** Every step is tried even when one fails (the first error is thrown after): a VM's leftovers never keep its slot. */
  private async teardown(lease: Lease): Promise<void> {
    const errors: unknown[] = [];
    const step = (work: () => Promise<void>) => work().catch((err: unknown) => void errors.push(err));
    await step(() => this.nft.removeVm(lease.tap));
    if (lease.ipv6) await step(() => this.proxyNdp('delete', lease));
    await step(() => this.deleteTap(lease.tap)); // its addresses and the /124 route go with it
    await rm(this.recordPath(lease.slot), { force: true });
    this.held.delete(lease.slot);
    if (errors.length > 0) throw errors[0];
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
      await this.nft.removeVm(record.tap);
      if (record.ipv6) await this.proxyNdp('delete', { ipv6: record.ipv6, uplink: record.uplink ?? this.options.outboundInterface });
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
    // Rules whose tap no live lease explains (a crash between the rules and the record's removal).
    await this.nft.removeWhere((tap) => !recorded.has(tap) && ![...this.held.values()].some((l) => l.tap === tap));
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

  /** Routing between the uplink and the taps; set once, left on (other routed traffic may rely on it by then). */
  private async enableForwarding(lease: Lease): Promise<void> {
    if (lease.internet || Object.keys(lease.ports).length > 0) await this.sysctl('/proc/sys/net/ipv4/ip_forward', '1');
    if (lease.ipv6) {
      await this.sysctl('/proc/sys/net/ipv6/conf/all/forwarding', '1');
      await this.sysctl(`/proc/sys/net/ipv6/conf/${lease.uplink}/proxy_ndp`, '1');
    }
  }

  /**
   * The kernel's NDP proxy: the uplink answers neighbour solicitations for the VM's
   * addresses (the /124 but the gateway), so a router that sees the whole /64 as
   * on-link delivers them to us; the /124 route on the tap does the rest.
   */
  private async proxyNdp(action: 'add' | 'delete', lease: Pick<Lease, 'ipv6' | 'uplink'>): Promise<void> {
    const lines = vmAddresses(lease.ipv6!).map((address) => `neigh ${action === 'add' ? 'replace' : 'del'} proxy ${address} dev ${lease.uplink}`);
    await this.ipBatch(['-6'], lines, action === 'delete');
  }

  private async uplinkIpv4(): Promise<string | undefined> {
    if (this.options.outboundInterface === '') return undefined;
    const { stdout } = await this.ip('-4', '-o', 'addr', 'show', 'dev', this.options.outboundInterface).catch(() => ({ stdout: '' }));
    return /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(stdout)?.[1];
  }

  /** `ip -batch -`: one process for many commands; `force` goes on past errors (deleting what is already gone). */
  private ipBatch(options: string[], lines: string[], force: boolean): Promise<void> {
    const netns = this.options.netns ? ['-n', this.options.netns] : [];
    return new Promise<void>((resolve, reject) => {
      const child = spawn('ip', [...netns, ...options, ...(force ? ['-force'] : []), '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 || force ? resolve() : reject(new Error(`ip: ${stderr.trim().split('\n')[0]}`))));
      child.stdin.end(lines.join('\n') + '\n');
    });
  }

  /**
   * Sets a /proc/sys switch unless it already has the value. Under the systemd unit
   * (ProtectKernelTunables=yes) the node cannot: the operator sets it in /etc/sysctl.d/.
   */
  private async sysctl(path: string, value: string): Promise<void> {
    if (this.options.netns) {
      await run('ip', ['netns', 'exec', this.options.netns, 'sh', '-c', 'printf %s "$1" > "$0"', path, value]);
      return;
    }
    if ((await readFile(path, 'utf8').catch(() => '')).trim() === value) return;
    try {
      await writeFile(path, value);
    } catch (err) {
      const name = path.slice('/proc/sys/'.length).replaceAll('/', '.');
      throw new Error(`${name} must be ${value} for VM networking and this process cannot set it (${(err as NodeJS.ErrnoException).code}): set it in /etc/sysctl.d/ (docs/networking.md)`);
    }
  }

  private ip(...args: string[]): Promise<{ stdout: string }> {
    const netns = this.options.netns ? ['-n', this.options.netns] : [];
    return run('ip', [...netns, ...args]);
  }

  private recordPath(slot: number): string {
    return join(this.options.stateDir, `${this.options.tapPrefix}${slot}.json`);
  }

  private async writeRecord(lease: Lease): Promise<void> {
    await mkdir(this.options.stateDir, { recursive: true, mode: 0o700 });
    const record: LeaseRecord = { ...lease, pid: process.pid };
    const path = this.recordPath(lease.slot);
    await writeFile(`${path}.tmp`, JSON.stringify(record) + '\n', { mode: 0o600 });
    await rename(`${path}.tmp`, path);
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

const DEFAULT_HOST_PORTS: PortRange = { min: 24000, max: 65535 };

function requestsOf(ports: MappedPorts): PortRequest[] {
  return Object.entries(ports).map(([port, m]) => ({ port: Number(port), tcp: m.tcp, udp: m.udp }));
}

function firewallOf(lease: Lease) {
  const forwards: Array<{ protocol: Protocol; hostPort: number; guestPort: number }> = [];
  for (const [vmPort, mapping] of Object.entries(lease.ports)) {
    if (mapping.tcp) forwards.push({ protocol: 'tcp', hostPort: mapping.host, guestPort: Number(vmPort) });
    if (mapping.udp) forwards.push({ protocol: 'udp', hostPort: mapping.host, guestPort: Number(vmPort) });
  }
  return { tap: lease.tap, guestIp: lease.guestIp, uplink: lease.uplink, internet: lease.internet, ...(lease.ipv6 ? { ipv6Network: lease.ipv6.network } : {}), forwards };
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
