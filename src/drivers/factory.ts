// Driver selection by name (orchestrator.driver in the TOML).

import { ProcessDriver, type ProcessDriverOptions } from './process/index.js';
import type { Driver } from './types.js';

export type DriverName = 'process' | 'qemu' | 'firecracker';

export const DRIVER_NAMES: readonly DriverName[] = ['process', 'qemu', 'firecracker'];

/** Options every driver takes; driver-specific settings extend this. */
export type DriverOptions = ProcessDriverOptions;

export function createDriver(name: DriverName, opts: DriverOptions): Driver {
  switch (name) {
    case 'process':
      return new ProcessDriver(opts);
    case 'qemu':
    case 'firecracker':
      throw new Error(`driver ${name} is not available in this build`);
    default:
      throw new Error(`unknown driver ${JSON.stringify(name as string)} (expected one of ${DRIVER_NAMES.join(', ')})`);
  }
}
