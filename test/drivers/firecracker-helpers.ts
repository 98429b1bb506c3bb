// Shared by the Firecracker driver and fake tests.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT } from '../helpers/paths.js';

/**
 * `<dir>/bin/firecracker`: the fake firecracker with its API log at `<dir>/api.log`
 * (drivers start the VMM with a minimal environment, so a wrapper passes the log file).
 */
export async function loggingFakeFirecracker(dir: string): Promise<{ binary: string; apiLog: string }> {
  const apiLog = join(dir, 'api.log');
  await mkdir(join(dir, 'bin'), { recursive: true });
  const binary = join(dir, 'bin', 'firecracker');
  const fake = join(ROOT, 'test/fixtures/firecracker/firecracker.mjs');
  await writeFile(binary, `#!/bin/sh\nexport FAKE_FIRECRACKER_LOG=${JSON.stringify(apiLog)}\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(fake)} "$@"\n`, { mode: 0o755 });
  return { binary, apiLog };
}

/** An x86 ELF header, a bzImage setup header or an arm64 Image header: all the fake (and the driver's check) read of a kernel. */
export function fakeKernel(format: 'elf' | 'bzimage' | 'arm64'): Buffer {
  const head = Buffer.alloc(0x400);
  if (format === 'elf') Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]).copy(head, 0);
  if (format === 'bzimage') head.write('HdrS', 0x202, 'latin1');
  if (format === 'arm64') head.write('ARM\x64', 0x38, 'latin1');
  return head;
}
