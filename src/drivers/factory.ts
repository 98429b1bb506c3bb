// Driver selection by name (orchestrator.driver in the TOML).

import { ProcessDriver, type ProcessDriverOptions } from './process/index.js';
import type { Driver } from './types.js';
import type { DriversSettings } from '../config/index.js';
import { defaultDriversSettings } from '../config/index.js';
import { QemuDriver } from './qemu/index.js';
import { FirecrackerDriver } from './firecracker/index.js';
import { NetworkPool } from './net/index.js';
import { SnapshotStore } from './vm/index.js';
import { createLogger } from '../common/index.js';

export type DriverName = 'process' | 'qemu' | 'firecracker';

export const DRIVER_NAMES: readonly DriverName[] = ['process', 'qemu', 'firecracker'];

/** Options every driver takes; driver-specific settings extend this. */
export type DriverOptions = ProcessDriverOptions & {
  /** [drivers.*] settings for the VM drivers (defaults when absent). */
  drivers?: DriversSettings;
};

export function createDriver(name: DriverName, opts: DriverOptions): Driver {
  switch (name) {
    case 'process':
    {
      const settings = (opts.drivers ?? defaultDriversSettings()).process;
      return new ProcessDriver({ ...opts, python: opts.python ?? settings.python, forkServer: opts.forkServer ?? settings.forkServer });
    }
    case 'qemu': {
      const { qemu, network, snapshots } = opts.drivers ?? defaultDriversSettings();
      return new QemuDriver({
        ...qemu,
        stopGraceMs: opts.stopGraceMs,
        pool: qemu.network === 'tap' ? new NetworkPool(network) : undefined,
        snapshots: snapshots.enabled ? new SnapshotStore(snapshots.dir, snapshots.maxBytes, createLogger('snapshots')) : undefined,
      });
    }
    case 'firecracker': {
      const { firecracker, network, snapshots } = opts.drivers ?? defaultDriversSettings();
      return new FirecrackerDriver({
        ...firecracker,
        stopGraceMs: opts.stopGraceMs,
        pool: new NetworkPool(network),
        snapshots: snapshots.enabled ? new SnapshotStore(snapshots.dir, snapshots.maxBytes, createLogger('snapshots')) : undefined,
      });
    }
    default:
      throw new Error(`unknown driver ${JSON.stringify(name as string)} (expected one of ${DRIVER_NAMES.join(', ')})`);
  }
}
