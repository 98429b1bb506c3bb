// Snapshots under Firecracker (1.16 API): once a program is ready, pause the VM,
// `PUT /snapshot/create` (a Full snapshot: the VM state and its guest memory), resume.
// At a later cold start, a fresh Firecracker process gets `PUT /snapshot/load` before
// any other configuration, with the memory file as a File backend, this life's tap
// (network_overrides) and vsock socket (vsock_override), resumed at once. The guest
// agent, over the vsock, then sets the clock, reseeds the kernel's generator and moves
// the guest to this life's address (a restored guest keeps the address it had at the
// save). Any failure: that Firecracker is killed, the entry removed, the VM boots.

import { dirname, join } from 'node:path';
import type { Logger } from '../../common/index.js';
import { AGENT_VSOCK_PORT, controlGuest, fileIdentity, NODE_VERSION, restoreCommands, snapshotKey, type SnapshotEntry, type SnapshotStore, type VmProcess } from '../vm/index.js';
import type { Lease } from '../net/index.js';
import type { FirecrackerApi } from './api.js';

/** How long a restore may take to load and to hear from the guest agent. */
export const RESTORE_WAIT_MS = 20_000;

/** The boot arguments that are this life's (the guest's addresses), left out of the key. */
const PER_LIFE_ARG = /^aleph\.(ip|gw|ip6|gw6)=/;

export interface FirecrackerSnapshotInputs {
  firecracker: string;
  kernel: string;
  baseInitramfs: string;
  archiveSha256: string;
  drives: Array<{ id: string; path: string; readOnly: boolean }>;
  vcpus: number;
  memoryMib: number;
  arch: string;
  bootArgs: string;
}

/**
 * Everything a saved state depends on: the node's version, the Firecracker binary, the
 * kernel, the base initramfs, the program's archive (code, entry, variables), its
 * drives, resources, architecture and boot arguments (less the per-life addresses,
 * which the agent sets after a restore). Any change is a new key.
 */
export async function firecrackerSnapshotKey(inputs: FirecrackerSnapshotInputs): Promise<string> {
  return snapshotKey({
    node: NODE_VERSION,
    vmm: 'firecracker',
    firecracker: await fileIdentity(inputs.firecracker),
    kernel: await fileIdentity(inputs.kernel),
    base: await fileIdentity(inputs.baseInitramfs),
    archive: inputs.archiveSha256,
    drives: await Promise.all(inputs.drives.map(async (d) => ({ id: d.id, readOnly: d.readOnly, file: await fileIdentity(d.path) }))),
    vcpus: inputs.vcpus,
    memoryMib: inputs.memoryMib,
    arch: inputs.arch,
    bootArgs: inputs.bootArgs.split(' ').filter((arg) => !PER_LIFE_ARG.test(arg)),
  });
}

/** The agent's `net` command for this life's lease. */
export function netCommand(lease: Lease): string {
  const v4 = `net ${lease.guestIp}/${lease.prefix} ${lease.hostIp}`;
  return lease.ipv6 ? `${v4} ${lease.ipv6.address}/${lease.ipv6.prefix} ${lease.ipv6.gateway}` : v4;
}

/** The body of `PUT /snapshot/load` (exported for tests). */
export function snapshotLoadBody(entry: Pick<SnapshotEntry, 'state' | 'files'>, tap: string, vsock: string): Record<string, unknown> {
  const memory = entry.files.memory;
  if (!memory) throw new Error('the snapshot has no memory file');
  return {
    snapshot_path: entry.state,
    mem_backend: { backend_type: 'File', backend_path: memory },
    resume_vm: true,
    network_overrides: [{ iface_id: 'eth0', host_dev_name: tap }],
    vsock_override: { uds_path: vsock },
  };
}

/**
 * Loads `entry` into `vm` (a Firecracker process that has had no other request) and
 * fixes up the guest. True when the guest answered; false when anything failed (the
 * caller kills that process and boots).
 */
export async function restoreSnapshot(vm: VmProcess, api: FirecrackerApi, entry: SnapshotEntry, lease: Lease, vsock: string, log: Logger): Promise<boolean> {
  try {
    await api.waitReady(vm.exited);
    await api.put('/snapshot/load', snapshotLoadBody(entry, lease.tap, vsock));
    await controlGuest({ kind: 'vsock', path: vsock, port: AGENT_VSOCK_PORT }, [...restoreCommands(), netCommand(lease)], RESTORE_WAIT_MS);
    return true;
  } catch (err) {
    log.warn('snapshot restore failed, booting instead', { error: (err as Error).message });
    return false;
  }
}

/** Saves the ready VM (pause, create, resume), then lets it run on. Never throws. */
export async function saveSnapshot(store: SnapshotStore, key: string, label: string, api: FirecrackerApi, vsock: string, log: Logger): Promise<void> {
  try {
    // Only a guest whose agent answers can be restored correctly (clock, entropy, address).
    await controlGuest({ kind: 'vsock', path: vsock, port: AGENT_VSOCK_PORT }, [`time ${Math.floor(Date.now() / 1000)} 0`], RESTORE_WAIT_MS);
  } catch (err) {
    log.warn('no snapshot: the guest agent does not answer on the vsock (an initramfs built without aleph-agent?)', { error: (err as Error).message });
    return;
  }
  const t0 = performance.now();
  const entry = await store.save(key, label, async (statePath) => {
    await api.call('PATCH', '/vm', { state: 'Paused' });
    try {
      await api.put('/snapshot/create', { snapshot_type: 'Full', snapshot_path: statePath, mem_file_path: join(dirname(statePath), 'memory') });
    } finally {
      await api.call('PATCH', '/vm', { state: 'Resumed' }).catch((err: Error) => log.error('the VM did not resume after its snapshot', { error: err.message }));
    }
  });
  if (entry) log.info('snapshot saved', { key: entry.key.slice(0, 12), bytes: entry.size, save_ms: Math.round(performance.now() - t0) });
}
