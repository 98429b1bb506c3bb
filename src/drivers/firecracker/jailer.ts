// The jailer side of the Firecracker driver (Firecracker 1.16's jailer): the
// argument list, the chroot and the cgroup, as the jailer computes them.
//
// - The jail is <chroot base>/<exec file name>/<id>/root, where the exec file name
//   is taken after resolving symlinks (the jailer canonicalizes --exec-file), so a
//   `firecracker` symlink to `firecracker-v1.16.1-x86_64` jails under the latter.
// - We fill the root with the kernel, initrd and drives before the jailer runs;
//   the jailer then copies the exec file in, makes /, /dev, /dev/net and /run
//   mode 0700 owned by the jail uid:gid, creates the device nodes, chroots and
//   execs `/<exec name> --id <id> --start-time-us ... --parent-cpu-time-us ...`
//   followed by what we pass after `--` (so we must not pass --id again: the
//   argument parser rejects a repeated argument).
// - With --cgroup-version 2 the cgroup is <cgroup2 mount>/<exec name>/<id>; the
//   jailer leaves its removal to the caller, so we remove it with the chroot.
// A chroot or cgroup left behind by a crashed run is removed before the id is reused.

import { chown, copyFile, link, mkdir, readFile, realpath, rm, rmdir } from 'node:fs/promises';
import { basename, join } from 'node:path';

export interface JailSpec {
  jailer: string;
  /** --exec-file: the firecracker binary with symlinks resolved (see resolveExecFile). */
  firecracker: string;
  id: string;
  uid: number;
  gid: number;
  chrootBaseDir: string;
  /** The cgroup v2 hierarchy the jailer uses (the cgroup2 mount in /proc/mounts). */
  cgroupRoot: string;
  memoryMib: number;
  vcpus: number;
  /** A network namespace path for --netns ('' = the node's). */
  netns?: string;
}

type JailPlace = Pick<JailSpec, 'chrootBaseDir' | 'firecracker' | 'id'>;

/** The exec file as the jailer sees it: symlinks resolved, so its name is the jail directory's. */
export async function resolveExecFile(binary: string): Promise<string> {
  return realpath(binary);
}

/** The jail's directory (what cleanup removes). */
export function chrootDir(spec: JailPlace): string {
  return join(spec.chrootBaseDir, basename(spec.firecracker), spec.id);
}

/** The jail's root directory, as the jailer computes it. */
export function chrootRoot(spec: JailPlace): string {
  return join(chrootDir(spec), 'root');
}

/** The VM's cgroup (v2), as the jailer creates it with the default parent cgroup. */
export function cgroupDir(spec: Pick<JailSpec, 'cgroupRoot' | 'firecracker' | 'id'>): string {
  return join(spec.cgroupRoot, basename(spec.firecracker), spec.id);
}

/** The API socket inside the jail (Firecracker's default --api-sock). */
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
  // The jailer itself passes --id (and the start-time arguments) first.
  args.push('--', '--api-sock', JAILED_API_SOCKET);
  return args;
}

/**
 * Makes a fresh, empty chroot root for `spec.id`, removing any leftover chroot and
 * cgroup first. The jailer itself sets the modes of /, /dev and /run.
 */
export async function prepareChroot(spec: JailSpec): Promise<string> {
  await removeJail(spec);
  const root = chrootRoot(spec);
  // The levels above the root as the jailer makes them (0755); the root is the jail uid's once the jailer ran.
  await mkdir(chrootDir(spec), { recursive: true, mode: 0o755 });
  await mkdir(root, { mode: 0o700 });
  return root;
}

/**
 * Links each shared file (kernel, drives made elsewhere) into the jail's root under
 * the given name: read-only ones are copied when a hard link cannot cross
 * filesystems, writable ones must link (a copy would lose what the guest writes).
 * Linked files keep their owner (a hard link shares the inode, so a chown changes
 * the original): they must be readable by the jail's uid. Returns the paths as the
 * jailed firecracker sees them ('/<name>').
 */
export async function linkIntoJail(spec: JailSpec, files: Record<string, string>, writable: ReadonlySet<string> = new Set()): Promise<Record<string, string>> {
  const root = chrootRoot(spec);
  const inside: Record<string, string> = {};
  for (const [name, source] of Object.entries(files)) {
    if (name === basename(spec.firecracker)) throw new Error(`a jail file may not be named like the exec file (${name})`);
    const target = join(root, name);
    try {
      await link(source, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      if (writable.has(name)) throw new Error(`${source} is on another filesystem than ${spec.chrootBaseDir}: a writable drive must be hard-linked into the jail`);
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

/** Removes the chroot and the cgroup of a jail whose firecracker has exited. Idempotent. */
export async function removeJail(spec: JailSpec): Promise<void> {
  await rm(chrootDir(spec), { recursive: true, force: true });
  await removeCgroup(cgroupDir(spec));
}

// A cgroup directory goes with rmdir (its control files cannot be unlinked); a
// process that is still exiting keeps it busy for a moment.
async function removeCgroup(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 20) throw new Error(`could not remove cgroup ${dir}: ${code ?? (err as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** The cgroup2 mount point in a /proc/mounts text (what the jailer uses), or undefined. */
export function cgroup2Mount(mounts: string): string | undefined {
  for (const line of mounts.split('\n')) {
    const fields = line.split(' ');
    if (fields[2] === 'cgroup2' && fields[1]) return fields[1].replace(/\\040/g, ' ');
  }
  return undefined;
}

/** The cgroup v2 root of this host: the cgroup2 mount in /proc/mounts. */
export async function hostCgroupRoot(): Promise<string | undefined> {
  try {
    return cgroup2Mount(await readFile('/proc/mounts', 'utf8'));
  } catch {
    return undefined;
  }
}
