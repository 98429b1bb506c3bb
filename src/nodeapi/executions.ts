// /about/executions/list (v1) and /v2/about/executions/list, from the
// orchestrator's execution records. Programs only: vm_type is always "microvm".
// Networking fields as the reference fills them from the VM's tap (v1: the IPv4
// subnet and the IPv6 /124; v2: those, the addresses, mapped ports); null for
// executions without a network of their own (process driver, qemu user-mode).

import type { ExecutionInfo } from '../orchestrator/index.js';

const RUNNING = new Set(['ready', 'draining']);

export interface ExecutionV1 {
  networking: { ipv4: string | null; ipv6: string | null };
  vm_type: 'microvm';
  awaiting_confidential_init: boolean;
}

export interface ExecutionV2 {
  networking: {
    ipv4_network: string | null; host_ipv4: string | null; ipv6_network: string | null;
    ipv6_ip: string | null; ipv4_ip: string | null; mapped_ports: Record<string, { host: number; tcp: boolean; udp: boolean }>;
  };
  status: {
    defined_at: string | null; preparing_at: string | null; prepared_at: string | null; starting_at: string | null;
    started_at: string | null; stopping_at: string | null; stopped_at: string | null;
  };
  running: boolean;
  awaiting_confidential_init: boolean;
  vm_type: 'microvm';
}

/** Running executions only, as the reference lists them. */
export function executionsV1(list: ExecutionInfo[]): Record<string, ExecutionV1> {
  const out: Record<string, ExecutionV1> = {};
  for (const execution of list) {
    if (!RUNNING.has(execution.state)) continue;
    out[execution.hash] = {
      networking: { ipv4: execution.network?.ipv4Network ?? null, ipv6: execution.network?.ipv6Network ?? null },
      vm_type: 'microvm',
      awaiting_confidential_init: false,
    };
  }
  return out;
}

/**
 * Every execution the node holds. Our record has when the boot began (started_at)
 * and when the program answered (ready_at); the reference's earlier steps
 * (defined, preparing, prepared, starting) all happen inside our boot, so they take
 * its start. Stopping and stopped executions leave the table, so those are null.
 */
export function executionsV2(list: ExecutionInfo[]): Record<string, ExecutionV2> {
  const out: Record<string, ExecutionV2> = {};
  for (const execution of list) {
    const begun = execution.started_at;
    const network = execution.network;
    out[execution.hash] = {
      networking: {
        ipv4_network: network?.ipv4Network ?? null, host_ipv4: network?.hostIpv4 ?? null, ipv6_network: network?.ipv6Network ?? null,
        ipv6_ip: network?.ipv6 ?? null, ipv4_ip: network?.ipv4 ?? null, mapped_ports: network?.mappedPorts ?? {},
      },
      status: {
        defined_at: begun, preparing_at: begun, prepared_at: begun, starting_at: begun,
        started_at: execution.ready_at, stopping_at: null, stopped_at: null,
      },
      running: RUNNING.has(execution.state),
      awaiting_confidential_init: false,
      vm_type: 'microvm',
    };
  }
  return out;
}
