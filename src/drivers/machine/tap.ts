// An instance on a tap from the node's pool, whichever VMM runs it: the lease (with
// the owner's port forwards as nftables DNAT on the uplink), the addresses cloud-init
// gives the VM, and where its HTTP port is reached.

import type { MachineLaunch, Program } from '../../programs/index.js';
import type { Lease, MappedPorts, NetworkPool } from '../net/index.js';
import type { Endpoint, Slot } from '../types.js';
import type { MachineNetwork } from './cloud-init.js';

/** A whole OS shuts down slower than a program: the reference waits 50 s too. */
export const MACHINE_STOP_GRACE_MS = 60_000;
/** Nameservers given to instances on a tap (user-mode networking has its own resolver). */
export const MACHINE_NAMESERVERS = ['9.9.9.9', '1.1.1.1'];

export interface MachineTap {
  lease: Lease;
  network: MachineNetwork;
  endpoint: Endpoint;
  mappedPorts: MappedPorts;
}

/** Acquires the tap; `onRelease` receives the step that gives it back. */
export async function machineTap(pool: NetworkPool, program: Program, launch: MachineLaunch, slot: Slot, onRelease: (step: () => Promise<void>) => void): Promise<MachineTap> {
  // The instance's IPv6 is the monitor's address for its hash (vm type 3).
  const lease = await pool.acquire(slot.executionId, { internet: launch.internet, hash: program.hash, vmType: 'instance', ports: launch.ports });
  onRelease(() => pool.release(lease));
  const network: MachineNetwork = { ipv4: `${lease.guestIp}/${lease.prefix}`, gateway4: lease.hostIp, nameservers: MACHINE_NAMESERVERS };
  if (lease.ipv6) Object.assign(network, { ipv6: `${lease.ipv6.address}/${lease.ipv6.prefix}`, gateway6: lease.ipv6.gateway });
  return { lease, network, endpoint: { kind: 'tcp', host: lease.guestIp, port: 80 }, mappedPorts: lease.ports };
}
