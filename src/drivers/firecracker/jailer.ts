// The jailer side of the Firecracker driver: the argument list, and the chroot
// (<base>/<exec name>/<id>/root) with the kernel and drives hard-linked into it
// (copied when hard links cannot cross filesystems) and owned by the jail's user.
// A chroot left behind by a crashed run is removed before the id is reused.

import { chown, copyFile, link, mkdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';

export interface JailSpec {
  jailer: string;
  firecracker: string; // --exec-file (absolute)
  id: string;
  uid: number;
  gid: number;
  chrootBaseDir: string;
  memoryMib: number;
  vcpus: number;
  /** A network namespace path for --netns ('' = the node's). */
  netns?: string;
}

/** The jail's root directory, as the jailer computes it. */
export function chrootRoot(spec: Pick<JailSpec, 'chrootBaseDir' | 'firecracker' | 'id'>): string {
  return join(spec.chrootBaseDir, basename(spec.firecracker), spec.id, 'root');
}

/** The jail's directory (what cleanup removes). */
export function chrootDir(spec: Pick<JailSpec, 'chrootBaseDir' | 'firecracker' | 'id'>): string {
  return join(spec.chrootBaseDir, basename(spec.firecracker), spec.id);
}

/** Where the API socket appears on the host (firecracker runs inside the chroot). */
export const JAILED_API_SOCKET = '/run/firecracker.socket';

export function jailerArgs(spec: JailSpec): string[] {
  const args = [
    '--id', spec.id,
    '--exec-file', spec.firecracker,
    '--uid', String(spec.uid),
    '--gid', String(spec.gid),
    '--chroot-base-dir', spec.chrootBaseDir,
    '--cgroup-version', '2',
    // Hard limits from the program's resources (memory plus VMM overhead).
    '--cgroup', `memory.max=${(spec.memoryMib + 64) * 1024 * 1024}`,
    '--cgroup', `cpu.max=${spec.vcpus * 100000} 100000`,
    '--resource-limit', 'no-file=2048',
  ];
  if (spec.netns) args.push('--netns', spec.netns);
  args.push('--', '--api-sock', JAILED_API_SOCKET, '--id', spec.id);
  return args;
}

/**
 * Makes a fresh chroot for `spec.id` (removing any leftover first) and links each
 * shared read-only file (kernel, root drive, code image) into its root under the
 * given name. Linked files keep their owner (a hard link shares the inode, so a
 * chown would change the original): they must be readable by the jail's uid.
 * Returns the paths as the jailed firecracker sees them ('/<name>').
 */
export async function prepareChroot(spec: JailSpec, files: Record<string, string>): Promise<Record<string, string>> {
  await rm(chrootDir(spec), { recursive: true, force: true });
  const root = chrootRoot(spec);
  await mkdir(join(root, 'run'), { recursive: true, mode: 0o755 });
  await chown(join(root, 'run'), spec.uid, spec.gid);
  const inside: Record<string, string> = {};
  for (const [name, source] of Object.entries(files)) {
    const target = join(root, name);
    try {
      await link(source, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      await copyFile(source, target);
    }
    inside[name] = `/${name}`;
  }
  return inside;
}

/** Hands a per-VM file inside the chroot to the jail's user. */
export async function ownForJail(spec: Pick<JailSpec, 'uid' | 'gid'>, path: string): Promise<void> {
  await chown(path, spec.uid, spec.gid);
}

export async function removeChroot(spec: Pick<JailSpec, 'chrootBaseDir' | 'firecracker' | 'id'>): Promise<void> {
  await rm(chrootDir(spec), { recursive: true, force: true });
}
