// IPv6 per VM: the /124 the Aleph network's monitor expects. aleph-scoring's
// get_executable_ipv6 (and aleph-vm's StaticIPv6Allocator) build it from the node's
// /64: the first four groups of the /64, the VM type as a fifth group, then 44 bits
// of the item hash (hash[0:4], hash[4:8], hash[8:11]) and a last nibble that is the
// VM owner's: 0 for the subnet (the host's gateway address on the tap), 1 for the
// VM's own address, the one the monitor pings.

import { formatIpv6, parseIpv6, parseIpv6Slash64 } from '../../common/index.js';

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
