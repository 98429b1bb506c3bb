// How a guest learns its network from a lease: kernel arguments for our guest init
// (programs; guest/init/init.sh reads them) and a cloud-init network-config v2 object
// (instances; the caller serialises it into the NoCloud drive), in the reference's shape.

import type { InstanceNetwork } from '../types.js';
import type { Lease } from './pool.js';

/** `aleph.ip=<addr>/<prefix> aleph.gw=<addr>` and, with IPv6, `aleph.ip6=<addr>/124 aleph.gw6=<addr>`. */
export function guestNetworkArgs(lease: Pick<Lease, 'guestIp' | 'hostIp' | 'prefix' | 'ipv6'>): string[] {
  const args = [`aleph.ip=${lease.guestIp}/${lease.prefix}`, `aleph.gw=${lease.hostIp}`];
  if (lease.ipv6) args.push(`aleph.ip6=${lease.ipv6.address}/${lease.ipv6.prefix}`, `aleph.gw6=${lease.ipv6.gateway}`);
  return args;
}

export interface NetworkConfigV2 {
  version: 2;
  ethernets: {
    eth0: {
      match: { driver: 'virtio_net' };
      addresses: string[];
      gateway4: string;
      gateway6?: string;
      nameservers: { addresses: string[] };
    };
  };
}

/**
 * cloud-init's network-config (version 2) for an instance: its IPv4 and IPv6 addresses,
 * gateways and nameservers on the virtio NIC (matched by driver: names differ by distro).
 * No dhcp keys: some distributions start DHCP when the key is present at all.
 */
export function networkConfigV2(lease: Pick<Lease, 'guestIp' | 'hostIp' | 'prefix' | 'ipv6'>, nameservers: string[]): NetworkConfigV2 {
  const eth0: NetworkConfigV2['ethernets']['eth0'] = {
    match: { driver: 'virtio_net' },
    addresses: [`${lease.guestIp}/${lease.prefix}`, ...(lease.ipv6 ? [`${lease.ipv6.address}/${lease.ipv6.prefix}`] : [])],
    gateway4: lease.hostIp,
    nameservers: { addresses: nameservers },
  };
  if (lease.ipv6) eth0.gateway6 = lease.ipv6.gateway;
  return { version: 2, ethernets: { eth0 } };
}

/** What the node API lists for a VM on a tap (the reference's networking fields). */
export function networkOf(lease: Lease): InstanceNetwork {
  return {
    ipv4Network: lease.network,
    ipv4: lease.guestIp,
    ipv6Network: lease.ipv6?.network ?? null,
    ipv6: lease.ipv6?.address ?? null,
    hostIpv4: lease.uplinkIpv4 ?? null,
    // Live: updatePorts replaces lease.ports while the VM runs.
    get mappedPorts() {
      return lease.ports;
    },
  };
}
