// A program is what the orchestrator boots: identity, resources and how to launch it.

export interface ProcessLaunch {
  kind: 'process';
  command: string[]; // argv; the program must listen on $PORT (and may read $HOST)
  cwd: string;
  env: Record<string, string>;
}

/** A program for the VM drivers (qemu, firecracker); see README "Drivers and the guest contract". */
export interface VmLaunch {
  kind: 'vm';
  code: string; // absolute: a directory (packed into the initramfs as /app) or a disk image (read-only drive); '' = none
  entrypoint: string; // absolute path inside the guest; must serve HTTP on :8080
  env: Record<string, string>; // exported before the entrypoint runs
  kernel: string; // '' = the driver's kernel
  initramfs: string; // '' = the driver's base initramfs
  internet: boolean; // outbound network access (NAT) for the guest
  /** Programs from the Aleph network (src/programs/aleph/launch.ts): what a VM driver needs beyond code + entrypoint. */
  aleph?: AlephVmExtras;
}

/** See README "Programs from the Aleph network". */
export interface AlephVmExtras {
  interface: 'asgi' | 'binary'; // asgi: the runtime serves `asgiApp` from /opt/code on :8080; binary: `entrypoint` does
  asgiApp: string; // 'module:app' for asgi, '' otherwise
  runtime: string; // absolute path of the runtime's root filesystem image (squashfs); '' = not fetched
  volumes: AlephVmVolume[];
}

export interface AlephVmVolume {
  mount: string; // absolute path inside the guest
  kind: 'data' | 'immutable' | 'ephemeral' | 'persistent';
  source: string; // host path: an image file or a folder (data, immutable, persistent); '' for ephemeral
  sizeMib: number; // ephemeral and persistent: the size the guest gets; 0 otherwise
  readOnly: boolean;
}

export type Launch = ProcessLaunch | VmLaunch;

export interface Program {
  hash: string; // 64 lowercase hex
  name: string; // '' when unnamed
  memoryMib: number;
  vcpus: number;
  healthPath: string; // '' = any HTTP answer means ready
  requestTimeoutMs: number; // 0 = the node's default
  launch: Launch;
  /** Programs from the Aleph network: the code's STORE message hash (the `Aleph-Program-Code-Ref` header). */
  codeRef?: string;
}

/** Where program definitions come from (local registry, Aleph network). */
export interface ProgramSource {
  /** Resolves a hash to its program; throws NotFoundError when unknown. */
  resolve(hash: string): Promise<Program>;
  /** Programs known without a lookup (for the index page and status). */
  known(): Program[];
  /**
   * Whether `hash` names a program, without fetching anything it needs to run (the
   * TLS on-demand policy asks this at handshake time). Never throws: a source that
   * cannot tell answers false.
   */
  exists(hash: string): Promise<boolean>;
}
