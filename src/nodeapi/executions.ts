// /about/executions/list (v1) and /v2/about/executions/list, from the
// orchestrator's execution records. vm_type is "instance" for INSTANCE messages,
// "microvm" for programs.

import { isIP } from 'node:net';
import type { ExecutionInfo } from '../orchestrator/index.js';

const RUNNING = new Set(['ready', 'draining']);

/** The guest's own address when the driver gave it one (tap networking); loopback forwards are not the guest's. */
function guestIpv4(endpoint: string): string | null {
  const host = endpoint.startsWith('[') ? endpoint.slice(1, endpoint.indexOf(']')) : endpoint.slice(0, endpoint.lastIndexOf(':'));
  if (isIP(host) !== 4 || host.startsWith('127.')) return null;
  return host;
}

export interface ExecutionV1 {
  networking: { ipv4: string | null; ipv6: string | null };
  vm_type: VmType;
  awaiting_confidential_init: boolean;
}

type VmType = 'microvm' | 'instance';

export interface ExecutionV2 {
  networking: {
    ipv4_network: string | null; host_ipv4: string | null; ipv6_network: string | null;
    ipv6_ip: string | null; ipv4_ip: string | null; mapped_ports: Record<string, unknown>;
  };
  status: {
    defined_at: string | null; preparing_at: string | null; prepared_at: string | null; starting_at: string | null;
    started_at: string | null; stopping_at: string | null; stopped_at: string | null;
  };
  running: boolean;
  awaiting_confidential_init: boolean;
  vm_type: VmType;
}

/** Running executions only, as the reference lists them. */
export function executionsV1(list: ExecutionInfo[]): Record<string, ExecutionV1> {
  const out: Record<string, ExecutionV1> = {};
  for (const execution of list) {
    if (!RUNNING.has(execution.state)) continue;
    out[execution.hash] = {
      networking: { ipv4: guestIpv4(execution.endpoint), ipv6: null },
      vm_type: execution.kind === 'instance' ? 'instance' : 'microvm',
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
    out[execution.hash] = {
      networking: {
        ipv4_network: null, host_ipv4: null, ipv6_network: null, ipv6_ip: null,
        ipv4_ip: guestIpv4(execution.endpoint), mapped_ports: execution.mapped_ports ?? {},
      },
      status: {
        defined_at: begun, preparing_at: begun, prepared_at: begun, starting_at: begun,
        started_at: execution.ready_at, stopping_at: null, stopped_at: null,
      },
      running: RUNNING.has(execution.state),
      awaiting_confidential_init: false,
      vm_type: execution.kind === 'instance' ? 'instance' : 'microvm',
    };
  }
  return out;
}
