// The guest agent (guest/agent/aleph-agent.c): a static binary in the base initramfs
// that answers the node on the control channel of VMs restored from a snapshot.
// Built from source with the host's C compiler (Debian: gcc and libc6-dev), since
// busybox has nothing that sets the clock precisely or forces a kernel reseed.

import { execFile } from 'node:child_process';
import { rename, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { GUEST_DIR } from './guest-init.js';

const run = promisify(execFile);

export const AGENT_SOURCE = `${GUEST_DIR}agent/aleph-agent.c`;

/** Compiles the agent to `out` (static, stripped) unless it is newer than its source; returns `out`. */
export async function buildGuestAgent(out: string, cc = 'cc'): Promise<string> {
  const [source, built] = await Promise.all([stat(AGENT_SOURCE), stat(out).catch(() => undefined)]);
  if (built && built.mtimeMs >= source.mtimeMs) return out;
  try {
    await run(cc, ['-static', '-Os', '-s', '-Wall', '-o', `${out}.tmp`, AGENT_SOURCE], { maxBuffer: 1 << 20 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    throw new Error(e.code === 'ENOENT' ? `${cc} not found: the guest agent needs a C compiler (apt install gcc libc6-dev)` : `cannot build the guest agent: ${(e.stderr ?? e.message).trim()}`);
  }
  await rename(`${out}.tmp`, out);
  return out;
}
