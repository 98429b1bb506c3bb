// The one boot layout of every VM (qemu and firecracker): kernel + our initramfs
// (base image + a per-program archive); no drive is ever the root device. From a
// VmLaunch this computes, as a pure function:
//   - the ordered drive list (attached in that order: vda, vdb, ...): the runtime
//     squashfs first, then the code image, then the volumes (parents before children);
//   - the /etc/aleph/ files the guest init reads (mounts, env, entry, cwd, hostname,
//     stop-timeout), which go into the per-program archive;
//   - the disks to make before boot (ephemeral images in the VM's own directory,
//     persistent images created once), for disks.ts.
// The guest side of this contract is guest/init/init.sh (docs/guest.md).

import { posix } from 'node:path';
import { base32Encode } from '../../common/index.js';
import type { AlephVmVolume, VmLaunch } from '../../programs/index.js';
import { envScript } from '../image/index.js';
import { DriverStartError } from '../types.js';
import { ASGI_SHUTDOWN_S } from '../stop-grace.js';

export type DriveRole = 'runtime' | 'code' | 'volume';
export type MountMode = 'root' | 'ro' | 'rw' | 'overlay';

export interface VmDrive {
  /** Letters, digits and '_' (a Firecracker drive_id; qemu's drive id and serial, at most 20 chars). */
  id: string;
  /** Host path of the image. */
  path: string;
  readOnly: boolean;
  role: DriveRole;
  /** The guest's block device name for this position (vda, vdb, ...). */
  device: string;
  /** Where the init mounts it ('/' for the runtime). */
  mount: string;
  fstype: 'squashfs' | 'ext4';
  mode: MountMode;
}

/** A disk made before boot (disks.ts): an empty ext4 image of `sizeMib`. */
export interface DiskToMake {
  path: string;
  sizeMib: number;
  /** ephemeral: made fresh at every boot; persistent: made once, kept. */
  lifetime: 'boot' | 'persistent';
}

export interface VmLayout {
  drives: VmDrive[];
  /** /etc/aleph/<name> contents for the per-program archive. */
  files: Record<string, string>;
  /** A code folder packed into the archive at /app (programs without a runtime), else undefined. */
  codeDir: string | undefined;
  disks: DiskToMake[];
}

export interface LayoutInput {
  hash: string; // 64 hex
  launch: VmLaunch;
  /** 'dir' for a code folder, 'image' for a code image, 'none' (see codeKind). */
  code: 'dir' | 'image' | 'none';
  /** The VM's own directory on the host (ephemeral volume images go there). */
  vmDir: string;
  /** A runtime image the driver supplies when the program names none ('' = none). */
  defaultRuntime?: string;
}

/** Where the guest finds things (docs/guest.md). */
export const GUEST_PATHS = { code: '/opt/code', legacyCode: '/app', guestPython: '/opt/aleph-guest', port: 8080 } as const;

/** The root PATH programs on a runtime get (Debian's default for root). */
const RUNTIME_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Seconds between SIGTERM and SIGKILL: the ASGI lifespan shutdown limit (10 s, as the reference), 2 s otherwise. */
export const STOP_TIMEOUT_S = { asgi: ASGI_SHUTDOWN_S, binary: 2 } as const;

/** Paths inside the guest that belong to the init (a volume there would hide them). */
const RESERVED = ['/proc', '/sys', '/dev', '/run', GUEST_PATHS.guestPython, GUEST_PATHS.code];

/** The RFC 4648 base32 label of a program hash (52 chars: also a valid hostname). */
export function hostLabel(hash: string): string {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new DriverStartError(`program hash ${JSON.stringify(hash)} is not 64 hex`);
  return base32Encode(Buffer.from(hash, 'hex'));
}

/** vda, vdb, ..., vdz, vdaa, ... (the kernel's virtio-blk naming). */
export function guestDevice(index: number): string {
  let name = '';
  let n = index;
  do {
    name = String.fromCharCode(97 + (n % 26)) + name;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return `vd${name}`;
}

/** Throws unless `mount` is an absolute, normalized path the init can take as one word. */
export function checkMount(mount: string, what: string): void {
  if (!mount.startsWith('/') || mount === '/' || posix.normalize(mount) !== mount || mount.split('/').includes('..') || !/^[\x21-\x7e]+$/.test(mount)) {
    throw new DriverStartError(`${what}: mount point ${JSON.stringify(mount)} is not a normalized absolute path without spaces`);
  }
  for (const reserved of RESERVED) {
    if (mount === reserved || mount.startsWith(`${reserved}/`)) throw new DriverStartError(`${what}: mount point ${mount} is reserved for the guest init`);
  }
}

export function vmLayout(input: LayoutInput): VmLayout {
  const { launch } = input;
  const aleph = launch.aleph;
  const runtime = aleph?.runtime || input.defaultRuntime || '';
  const drives: VmDrive[] = [];
  const disks: DiskToMake[] = [];
  const add = (drive: Omit<VmDrive, 'device'>) => drives.push({ ...drive, device: guestDevice(drives.length) });

  if (runtime) add({ id: 'runtime', path: runtime, readOnly: true, role: 'runtime', mount: '/', fstype: 'squashfs', mode: 'root' });
  const codeMount = runtime ? GUEST_PATHS.code : GUEST_PATHS.legacyCode;
  let codeDir: string | undefined;
  if (input.code === 'image') add({ id: 'code', path: launch.code, readOnly: true, role: 'code', mount: codeMount, fstype: 'squashfs', mode: 'ro' });
  else if (input.code === 'dir') {
    if (runtime) throw new DriverStartError('a code folder cannot be used with a runtime: the code must be an image (squashfs)');
    codeDir = launch.code;
  }
  if (aleph?.volumes.length && !runtime) throw new DriverStartError('volumes need a runtime (the program names none)');
  // Parents before children, so a volume mounted inside another one stays visible.
  const volumes = [...(aleph?.volumes ?? [])].map((v, index) => ({ v, index })).sort((a, b) => depth(a.v.mount) - depth(b.v.mount) || a.index - b.index);
  for (const { v, index } of volumes) {
    const what = `volume ${index} (${v.kind})`;
    checkMount(v.mount, what);
    add(volumeDrive(v, index, what, input.vmDir, disks));
  }

  const iface = aleph?.interface ?? 'binary';
  let entry: string[];
  if (iface === 'asgi') {
    if (!runtime) throw new DriverStartError('an ASGI program needs a runtime (with python3)');
    if (!/^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$/.test(aleph!.asgiApp)) throw new DriverStartError(`ASGI app ${JSON.stringify(aleph!.asgiApp)} is not module:attribute`);
    entry = ['python3', '-m', 'aleph_asgi', '--app', aleph!.asgiApp, '--app-dir', GUEST_PATHS.code, '--port', String(GUEST_PATHS.port)];
  } else {
    if (launch.entrypoint === '') throw new DriverStartError('the program has no entrypoint');
    entry = [launch.entrypoint, ...(aleph?.args ?? [])];
  }
  for (const arg of entry) if (arg.includes('\n') || arg.includes('\0')) throw new DriverStartError('an argument of the entrypoint contains a newline');

  const env: Record<string, string> = runtime ? { PATH: RUNTIME_PATH, HOME: '/root', LANG: 'C.UTF-8' } : {};
  if (iface === 'asgi') env.PYTHONPATH = GUEST_PATHS.guestPython;
  Object.assign(env, launch.env);
  let envText: string;
  try {
    envText = envScript(env);
  } catch (err) {
    throw new DriverStartError((err as Error).message);
  }

  const files: Record<string, string> = {
    mounts: drives.map((d) => `${d.id} ${d.device} ${d.mount} ${d.fstype} ${d.mode}\n`).join(''),
    env: envText,
    entry: entry.map((a) => `${a}\n`).join(''),
    cwd: `${runtime ? GUEST_PATHS.code : GUEST_PATHS.legacyCode}\n`,
    hostname: `${hostLabel(input.hash)}\n`,
    'stop-timeout': `${STOP_TIMEOUT_S[iface]}\n`,
  };
  return { drives, files, codeDir, disks };
}

function volumeDrive(v: AlephVmVolume, index: number, what: string, vmDir: string, disks: DiskToMake[]): Omit<VmDrive, 'device'> {
  const id = `volume_${index}`;
  switch (v.kind) {
    case 'immutable':
      if (!v.source) throw new DriverStartError(`${what}: no image`);
      return { id, path: v.source, readOnly: true, role: 'volume', mount: v.mount, fstype: 'squashfs', mode: 'ro' };
    case 'data':
      // As the reference unpacks the data at its mount: writable, reset at each boot.
      if (!v.source) throw new DriverStartError(`${what}: no image`);
      return { id, path: v.source, readOnly: true, role: 'volume', mount: v.mount, fstype: 'squashfs', mode: 'overlay' };
    case 'ephemeral': {
      if (!(v.sizeMib > 0)) throw new DriverStartError(`${what}: size_mib is required`);
      const path = posix.join(vmDir, `${id}.ephemeral.img`);
      disks.push({ path, sizeMib: v.sizeMib, lifetime: 'boot' });
      return { id, path, readOnly: false, role: 'volume', mount: v.mount, fstype: 'ext4', mode: 'rw' };
    }
    case 'persistent':
      if (!(v.sizeMib > 0)) throw new DriverStartError(`${what}: size_mib is required`);
      if (!v.source.endsWith('.img')) throw new DriverStartError(`${what}: ${v.source} is not a volume image path (<volumes_dir>/<hash>/<name>.img)`);
      disks.push({ path: v.source, sizeMib: v.sizeMib, lifetime: 'persistent' });
      return { id, path: v.source, readOnly: false, role: 'volume', mount: v.mount, fstype: 'ext4', mode: 'rw' };
  }
}

function depth(mount: string): number {
  return mount.split('/').length;
}
