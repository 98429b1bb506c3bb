// A program is what the orchestrator boots: identity, resources and how to launch it.

export interface ProcessLaunch {
  kind: 'process';
  command: string[]; // argv (inside the sandbox when `sandbox` is set); the program must listen on $PORT (and may read $HOST). With `asgi`: [] (the driver runs the interpreter)
  cwd: string;
  env: Record<string, string>;
  /** Runs inside bubblewrap, in its own network namespace (docs/security.md); the driver assembles the command line. */
  sandbox?: ProcessSandbox;
  /** An ASGI app served by guest/aleph_asgi: the driver appends `<python> -m aleph_asgi --app .. --app-dir .. --host .. --port ..`. */
  asgi?: AsgiServe;
}

/**
 * A bubblewrap sandbox as data: the driver adds what is per execution (the network
 * namespace's relays, the run folder, the guest API socket) and the `--` before the command.
 */
export interface ProcessSandbox {
  bwrap: string; // the bubblewrap binary
  options: string[]; // its filesystem options (binds, tmpfs, --chdir), without any network option or '--'
  socat: string; // the relay between the namespace's loopback and the node's unix sockets (visible inside: under /usr)
  /**
   * Start bwrap with SIGTERM ignored: bwrap dies at once on SIGTERM, and --die-with-parent
   * then kills the sandbox before an ASGI server's lifespan shutdown ran; ignored (kept
   * across exec), bwrap waits instead and our server installs its own handler.
   */
  ignoreTerm: boolean;
  /** A route out of the network namespace (the message's environment.internet), through pasta; nothing in. */
  internet?: boolean;
}

/** What the process driver needs to serve an ASGI app with our server (guest/aleph_asgi). */
export interface AsgiServe {
  app: string; // module:attribute
  appDir: string; // --app-dir as the interpreter sees it (inside a sandbox: /opt/code)
  guestDir: string; // PYTHONPATH as the interpreter sees it: the package's guest/ (inside a sandbox: /opt/aleph-guest)
}

/** A program for the VM drivers (qemu, firecracker); see docs/drivers.md. */
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

/** See docs/aleph-programs.md. */
export interface AlephVmExtras {
  interface: 'asgi' | 'binary'; // asgi: the runtime serves `asgiApp` from /opt/code on :8080; binary: `entrypoint` does
  asgiApp: string; // 'module:app' for asgi, '' otherwise
  args?: string[]; // binary: arguments after the entrypoint (the message's code.args)
  runtime: string; // absolute path of the runtime's root filesystem image (squashfs); '' = not fetched
  volumes: AlephVmVolume[];
}

export interface AlephVmVolume {
  mount: string; // absolute path inside the guest
  kind: 'data' | 'immutable' | 'ephemeral' | 'persistent';
  source: string; // host path: an image (VM drivers: squashfs for data/immutable, <volumes_dir>/<hash>/<name>.img for persistent) or a folder (process driver); '' for ephemeral
  sizeMib: number; // ephemeral and persistent: the size the guest gets; 0 otherwise
  readOnly: boolean;
}

/**
 * An Aleph instance (INSTANCE message): a whole machine booting its own disk, kept
 * running until stopped. Named "machine" here because `Instance` in drivers/ means
 * any started program. See docs/instances.md.
 */
export interface MachineLaunch {
  kind: 'machine';
  /** The cached parent disk image (rootfs.parent), never written to. */
  parent: string;
  parentFormat: 'qcow2' | 'raw';
  /** The instance's own disk: a qcow2 overlay over `parent`, made at first start, kept until erased. */
  disk: string;
  sizeMib: number;
  /** Where per-instance state lives besides the disk (allocated host ports). */
  stateDir: string;
  /** cloud-init: the hostname (base32 of the hash, as the reference) and the owner's keys. */
  hostname: string;
  authorizedKeys: string[];
  /** Ports of the VM reachable from the host; 22/tcp always. */
  ports: MachinePort[];
  internet: boolean;
  /**
   * The message's volumes, attached after the root disk and the cloud-init drive in
   * the message's order: immutable (the blob, read-only), ephemeral (source '', a fresh
   * ext4 image at every boot), persistent (`<stateDir>/<name>.img`, ext4, kept until erased).
   */
  volumes: AlephVmVolume[];
}

export interface MachinePort {
  port: number;
  tcp: boolean;
  udp: boolean;
}

export type Launch = ProcessLaunch | VmLaunch | MachineLaunch;

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
  /** Programs from the Aleph network: the PROGRAM message's sender (the program's ALEPH_ADDRESS_TO_USE). */
  sender?: string;
  /**
   * Never stopped for idleness: PROGRAM messages with `on.persistent: true`, and every
   * INSTANCE. Whether it runs without a request is the scheduler's call (allocations).
   */
  persistent?: boolean;
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
  /**
   * Deletes the program's persistent volumes (its owner's erase). Call only while it
   * does not run; its next start gets empty ones. Sources without volumes omit it.
   */
  eraseVolumes?(hash: string): Promise<void>;
}
