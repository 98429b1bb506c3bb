// A validated PROGRAM message + its fetched files -> a Program the orchestrator boots.
//
// VM drivers (the normal path) get a VmLaunch: the code as a squashfs image (the
// blob itself, or one made from a zip or plain file), which the guest mounts at
// /opt/code, the entrypoint (binary programs listen on 8080), the message's variables as environment, and `aleph` extras: the interface
// (ASGI programs are served by the runtime), the runtime image and every volume.
//
// The process driver runs downloaded code only when the operator allows it
// (programs.allow_process_for_network) and only inside bubblewrap: a fresh mount,
// pid, ipc, uts and user namespace holding the host's /usr (read-only), the code at
// /opt/code (read-only), data and immutable volumes read-only, ephemeral volumes as
// sized tmpfs, persistent volumes read-write from a per-program host folder, and its
// own network namespace (the process driver relays its port and guest API through
// unix sockets: drivers/process/sandbox.ts). ASGI programs run with the host's python (drivers.process.python,
// found in the sandbox's /usr) and our server from guest/, bound read-only at
// /opt/aleph-guest: the runtime image is not used, so the app gets the host's
// Python packages (python3-fastapi and friends from Debian).

import { constants } from 'node:fs';
import { access, lstat, readlink } from 'node:fs/promises';
import path from 'node:path';
import { base32Encode, GUEST_DIR, GUEST_MOUNT } from '../../common/index.js';
import type { AlephVmVolume, Program, ProcessLaunch, VmLaunch } from '../types.js';
import type { ProgramSpec } from './message.js';

/** Where the sandbox puts the code (as the reference supervisor's guests do). */
export const CODE_MOUNT = '/opt/code';
/** Where the guest init puts the code of a program on a runtime (src/drivers/vm/layout.ts). */
export const GUEST_CODE = '/opt/code';

export class LaunchRefused extends Error {
  override readonly name = 'LaunchRefused';
}

export interface ProgramFiles {
  code: string; // folder (zip, plain; squashfs for the process driver) or image (squashfs, VM drivers)
  runtime: string; // runtime image, '' when not fetched (process driver)
  volumes: AlephVmVolume[]; // data first, then the message's volumes in order
}

/**
 * The request timeout floor: `resources.seconds` below it is raised to it. The
 * reference's default of 1 s is too short here: the first requests after a cold
 * start still import and warm up lazily (FastAPI builds its routes, pydantic its
 * validators) and under TCG or on a loaded node that alone takes seconds. Booting
 * itself is bounded by orchestrator.boot_timeout, not by this. 10 s still ends a
 * hung request well before a client or the 30 s default of a message would.
 */
export const MIN_REQUEST_SECONDS = 10;

export function toProgram(spec: ProgramSpec, launch: Program['launch'], codeRef: string): Program {
  return {
    hash: spec.hash,
    name: '',
    memoryMib: spec.resources.memoryMib,
    vcpus: spec.resources.vcpus,
    healthPath: '',
    requestTimeoutMs: Math.ceil(Math.max(spec.resources.seconds, MIN_REQUEST_SECONDS) * 1000),
    launch,
    codeRef,
    sender: spec.sender,
    ...(spec.persistent ? { persistent: true } : {}),
  };
}

/** An instance's hostname: its hash in lowercase base32, unpadded (as the reference's cloud-init). */
export function hostnameOf(hash: string): string {
  return base32Encode(Buffer.from(hash, 'hex'));
}

export function vmLaunch(spec: ProgramSpec, files: ProgramFiles): VmLaunch {
  const asgi = spec.code.interface === 'asgi';
  return {
    kind: 'vm',
    code: files.code,
    entrypoint: asgi ? '' : path.posix.join(GUEST_CODE, spec.code.entrypoint),
    env: { ...spec.variables },
    kernel: '',
    initramfs: '',
    internet: spec.internet,
    aleph: { interface: spec.code.interface, asgiApp: asgi ? spec.code.entrypoint : '', args: [...spec.code.args], runtime: files.runtime, volumes: files.volumes },
  };
}

/** The sandboxed launch for the process driver (the driver adds the network namespace, docs/security.md). */
export function processLaunch(spec: ProgramSpec, files: ProgramFiles, sandbox: Sandbox, guestDir: string = GUEST_DIR): ProcessLaunch {
  const asgi = spec.code.interface === 'asgi';
  const options = [
    '--die-with-parent', '--unshare-all',
    ...sandbox.systemBinds,
    '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp',
    '--ro-bind', files.code, CODE_MOUNT,
  ];
  if (asgi) options.push('--ro-bind', guestDir, GUEST_MOUNT);
  for (const volume of files.volumes) {
    if (volume.kind === 'ephemeral') options.push('--size', String(volume.sizeMib * 1024 * 1024), '--tmpfs', volume.mount);
    else options.push(volume.readOnly ? '--ro-bind' : '--bind', volume.source, volume.mount);
  }
  options.push('--chdir', CODE_MOUNT);
  const box = { bwrap: sandbox.bwrap, options, socat: sandbox.socat, ignoreTerm: asgi, internet: spec.internet };
  if (asgi) {
    // The process driver appends `<python> -m aleph_asgi ... --port $PORT` (drivers/process/asgi.ts).
    return { kind: 'process', command: [], cwd: '/', env: { ...spec.variables }, sandbox: box, asgi: { app: spec.code.entrypoint, appDir: CODE_MOUNT, guestDir: GUEST_MOUNT } };
  }
  return { kind: 'process', command: [path.posix.join(CODE_MOUNT, spec.code.entrypoint), ...spec.code.args], cwd: '/', env: { ...spec.variables }, sandbox: box };
}

export interface Sandbox {
  bwrap: string;
  socat: string;
  systemBinds: string[];
}

/** Finds bubblewrap, socat and the host folders a program needs; undefined when bwrap or socat is missing. */
export async function findSandbox(): Promise<Sandbox | undefined> {
  const bwrap = await findExecutable('bwrap');
  const socat = await findExecutable('socat');
  if (!bwrap || !socat) return undefined;
  const binds: string[] = [];
  const bindDirs = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/etc/alternatives', '/etc/ssl', '/etc/ca-certificates'];
  // The node binary that runs this process, when it lives outside /usr (nvm, /opt).
  const nodePrefix = path.dirname(path.dirname(process.execPath));
  if (!nodePrefix.startsWith('/usr') && nodePrefix !== '/') bindDirs.push(nodePrefix);
  for (const dir of bindDirs) {
    try {
      const info = await lstat(dir);
      if (info.isSymbolicLink()) binds.push('--symlink', await readlink(dir), dir);
      else if (info.isDirectory()) binds.push('--ro-bind', dir, dir);
    } catch {
      // absent on this host
    }
  }
  for (const file of ['/etc/resolv.conf', '/etc/hosts', '/etc/nsswitch.conf', '/etc/passwd', '/etc/group']) {
    binds.push('--ro-bind-try', file, file);
  }
  return { bwrap, socat, systemBinds: binds };
}

async function findExecutable(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}
