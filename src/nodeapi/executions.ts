// /about/executions/list (v1) and /v2/about/executions/list, from the
// orchestrator's execution records. vm_type is "instance" for INSTANCE messages,
// "microvm" for programs. Networking fields as the reference fills them from the VM's
// tap (v1: the IPv4 subnet and the IPv6 /124; v2: those, the addresses, mapped ports);
// null for executions without a network of their own (process driver, qemu user-mode,
// where an instance's forwarded ports are its mapped_ports all the same).

import { createHash } from 'node:crypto';
import type { ExecutionInfo } from '../orchestrator/index.js';

const RUNNING = new Set(['ready', 'draining']);

export interface ExecutionV1 {
  networking: { ipv4: string | null; ipv6: string | null };
  vm_type: VmType;
  awaiting_confidential_init: boolean;
}

type VmType = 'microvm' | 'instance';

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
  vm_type: VmType;
}

/** Running executions only, as the reference lists them. */
export function executionsV1(list: ExecutionInfo[]): Record<string, ExecutionV1> {
  const out: Record<string, ExecutionV1> = {};
  for (const execution of list) {
    if (!RUNNING.has(execution.state)) continue;
    out[execution.hash] = {
      networking: { ipv4: execution.network?.ipv4Network ?? null, ipv6: execution.network?.ipv6Network ?? null },
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
    const network = execution.network;
    out[execution.hash] = {
      networking: {
        ipv4_network: network?.ipv4Network ?? null, host_ipv4: network?.hostIpv4 ?? null, ipv6_network: network?.ipv6Network ?? null,
        ipv6_ip: network?.ipv6 ?? null, ipv4_ip: network?.ipv4 ?? null, mapped_ports: network?.mappedPorts ?? execution.mapped_ports ?? {},
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

/** One row of /about/executions/records: the reference's ExecutionRecord columns. */
export interface ExecutionRecord {
  uuid: string;
  vm_hash: string;
  vm_id: number | null;
  time_defined: string;
  time_prepared: string | null;
  time_started: string | null;
  time_stopping: string | null;
  cpu_time_user: number | null;
  cpu_time_system: number | null;
  io_read_count: number | null;
  io_write_count: number | null;
  io_read_bytes: number | null;
  io_write_bytes: number | null;
  vcpus: number;
  memory: number;
  network_tap: string | null;
  message: unknown;
  original_message: unknown;
  persistent: boolean | null;
  gpus: unknown[] | null;
  mapped_ports: Record<string, unknown> | null;
}

/** A stable id per execution (a program's hash and boot time), in UUID form as the reference's are. */
function executionUuid(execution: ExecutionInfo): string {
  const hex = createHash('sha256').update(`${execution.hash}\n${execution.started_at}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The executions the node holds now, newest first, as the reference's records. The
 * reference keeps them in a database after they stop (for accounting); aleph-edge keeps
 * no history, and measures no CPU or I/O per execution, so those columns are null.
 */
export function executionRecords(list: ExecutionInfo[]): ExecutionRecord[] {
  return [...list]
    .sort((a, b) => b.started_at.localeCompare(a.started_at))
    .map((execution) => ({
      uuid: executionUuid(execution),
      vm_hash: execution.hash,
      vm_id: null,
      time_defined: execution.started_at,
      time_prepared: execution.started_at,
      time_started: execution.ready_at,
      time_stopping: null,
      cpu_time_user: null,
      cpu_time_system: null,
      io_read_count: null,
      io_write_count: null,
      io_read_bytes: null,
      io_write_bytes: null,
      vcpus: execution.vcpus,
      memory: execution.memory_mib,
      network_tap: null,
      message: null,
      original_message: null,
      persistent: null,
      gpus: [],
      mapped_ports: null,
    }));
}
