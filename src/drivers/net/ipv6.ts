// IPv6 per VM: the /124 the Aleph network's monitor expects. aleph-scoring's
// get_executable_ipv6 (and aleph-vm's StaticIPv6Allocator) build it from the node's
// /64: the first four groups of the /64, the VM type as a fifth group, then 44 bits
// of the item hash (hash[0:4], hash[4:8], hash[8:11]) and a last nibble that is the
// VM owner's: 0 for the subnet (the host's gateway address on the tap), 1 for the
// VM's own address, the one the monitor pings.

/** aleph-vm's VmType values (src/aleph/vm/vm_type.py, the same in aleph-scoring). */
export const VM_TYPES = { microvm: 1, persistent_program: 2, instance: 3 } as const;
export type VmType = keyof typeof VM_TYPES;

export interface Ipv6Plan {
  /** The VM's subnet, e.g. "2001:db8:0:1:1:abcd:ef01:2340/124". */
  network: string;
  /** The VM's address (first after the subnet address): what the monitor pings. */
  address: string;
  /** The host's address on the tap (the subnet address): the VM's IPv6 gateway. */
  gateway: string;
  prefix: 124;
}

/** Parses "<address>/64" into its first 64 bits; undefined when it is not an IPv6 /64 without host bits. */
export function parseIpv6Slash64(text: string): bigint | undefined {
  const slash = text.lastIndexOf('/');
  if (slash < 0 || text.slice(slash + 1) !== '64') return undefined;
  const value = parseIpv6(text.slice(0, slash));
  if (value === undefined || (value & ((1n << 64n) - 1n)) !== 0n) return undefined;
  return value;
}

/** The /124 of one VM: `<pool /64>:<vm type>:<hash[0:4]>:<hash[4:8]>:<hash[8:11]>0/124`. */
export function executableIpv6(pool: string, vmType: VmType, hash: string): Ipv6Plan {
  const base = parseIpv6Slash64(pool);
  if (base === undefined) throw new Error(`IPv6 pool ${JSON.stringify(pool)} is not an IPv6 /64 like 2001:db8:1:2::/64`);
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`item hash ${JSON.stringify(hash)} is not 64 lowercase hex digits`);
  const low = (BigInt(VM_TYPES[vmType]) << 48n) | (BigInt(`0x${hash.slice(0, 11)}`) << 4n);
  const subnet = base | low;
  return { network: `${formatIpv6(subnet)}/124`, address: formatIpv6(subnet + 1n), gateway: formatIpv6(subnet), prefix: 124 };
}

/** Every address of a /124 but the subnet's own (the gateway): those the VM may use, proxied for NDP. */
export function vmAddresses(plan: Ipv6Plan): string[] {
  const subnet = parseIpv6(plan.gateway)!;
  return Array.from({ length: 15 }, (_, i) => formatIpv6(subnet + BigInt(i + 1)));
}

export function parseIpv6(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F:]+$/.test(text) || text.length > 39) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  let value = 0n;
  for (const group of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
    value = (value << 16n) | BigInt(`0x${group}`);
  }
  return value;
}

/** RFC 5952 text: lowercase, leading zeros dropped, the longest run (2+) of zero groups as "::". */
export function formatIpv6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(16 * (7 - i))) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}
