// Typed settings produced by the loader. TOML keys are snake_case; fields here are
// camelCase. Durations are milliseconds, sizes bytes unless the name says MiB.
// Relative paths in the file are resolved against the config file's directory.

export interface ListenAddress {
  host: string; // '0.0.0.0', '::', '127.0.0.1' (no brackets)
  port: number;
}

export type HttpProtocol = 'h1' | 'h2';

export interface ServerSettings {
  domain: string; // lowercase, no trailing dot, no port
  httpsListen: ListenAddress[];
  httpListen: ListenAddress[];
  statusSocket: string; // absolute path
  statusSocketMode: number; // default 0o660
  drainTimeoutMs: number; // default 30s
  workers: number; // default 0 = one worker process per core; 1 = everything in one process
  protocols: HttpProtocol[]; // default ['h1', 'h2']: what ALPN offers on the HTTPS listeners
  hsts: string; // Strict-Transport-Security on the node domain; default 'max-age=31536000' in acme mode, '' (none) otherwise
  limits: {
    maxHeaderBytes: number; // default 16 KiB
    headersTimeoutMs: number; // default 10s: time to receive complete headers (slowloris)
    requestTimeoutMs: number; // default 0 (none): whole-request receive timeout; bodies may be large
    keepAliveTimeoutMs: number; // default 5s
    maxBodyBytes: number; // default 0 = unlimited (streamed, never buffered)
    maxConnections: number; // default 0 = unlimited
    handshakeTimeoutMs: number; // default 10s: a connection that has not finished its TLS handshake by then is destroyed
    maxHandshakesPerAddress: number; // default 128: unfinished handshakes per client address (IPv6: per /64)
    maxHandshakes: number; // default 4096: unfinished handshakes in total, per process
    h2MaxConcurrentStreams: number; // default 100 streams per HTTP/2 connection
    h2IdleTimeoutMs: number; // default 60s: an HTTP/2 connection without open streams is closed after this
    h1MaxPipelinedRequests: number; // default 16: requests of one HTTP/1.1 connection served at once; later ones wait, unread
    sendTimeoutMs: number; // default 60s: a response whose client takes none of its pending bytes for this long is cut
  };
}

export type TlsMode = 'acme' | 'internal' | 'files';
export type ChallengeType = 'tls-alpn-01' | 'http-01';

export interface TlsFilePair {
  hosts: string[]; // exact hosts or '*.example.org' wildcards, lowercase
  cert: string; // absolute path
  key: string; // absolute path
}

export interface TlsSettings {
  mode: TlsMode;
  storage: string; // absolute path; default 'certs' next to the config file's parent (see loader)
  email: string;
  directory: string;
  directoryCa: string; // absolute path or ''
  challenges: ChallengeType[];
  onDemand: boolean;
  ask: string;
  issueRate: { burst: number; intervalMs: number };
  wildcard: { enabled: boolean; dnsHook: string };
  files: TlsFilePair[];
  cacheSize: number; // in-memory certificate cache entries, default 1000
  eab: { kid: string; hmacKey: string } | null;
}

export type DriverName = 'process' | 'qemu' | 'firecracker';

export interface OrchestratorSettings {
  driver: DriverName;
  idleTimeoutMs: number; // default 60m
  bootTimeoutMs: number; // default 20s
  requestTimeoutMs: number; // default 30s
  maxVms: number; // default 64
  memoryBudgetMib: number; // default 8192
  holdQueue: number; // default 100
  stopGraceMs: number; // default 5s: SIGTERM -> SIGKILL
  prewarm?: number; // VMs kept booted with no program, for programs not seen yet (docs/warm-pool.md); default (and absent) 0
}

export interface LocalProgramSettings {
  hash: string; // 64 lowercase hex
  name: string; // optional in TOML; '' when absent
  command: string[]; // process driver; non-empty
  cwd: string; // absolute; default: the config file's directory
  env: Record<string, string>;
  memoryMib: number; // default 128
  vcpus: number; // default 1
  healthPath: string; // '' = any HTTP answer on the port means ready
  requestTimeoutMs: number; // 0 = node default
  /** VM drivers: present when the entry has `code` (then `command` is optional). */
  vm?: LocalVmSettings;
  /** An ASGI app (`asgi = "main:app"`, `code = "<dir>"`): the process driver serves it with guest/aleph_asgi; `command` is then empty. */
  asgi?: LocalAsgiSettings;
}

export interface LocalAsgiSettings {
  app: string; // module:attribute, checked against ASGI_APP_PATTERN
  code: string; // absolute folder: put first on sys.path (--app-dir) and the program's cwd
}

export interface LocalVmSettings {
  code: string; // absolute: a directory (becomes /app in the guest) or a disk image (read-only drive)
  entrypoint: string; // inside the guest; default /app/start; must serve HTTP on :8080
  kernel: string; // absolute or '' (the driver's kernel)
  initramfs: string; // absolute or '' (the driver's base initramfs)
  internet: boolean; // outbound access (NAT) for the guest; default false
}

export type QemuMachineName = 'microvm' | 'q35';

export interface QemuDriverSettings {
  binary: string; // default 'qemu-system-x86_64'
  kernel: string; // absolute; bzImage for programs; '' with initramfs '' too = a node for instances only
  initramfs: string; // absolute; base initramfs from the image builder (set with kernel, or neither)
  machine: 'auto' | QemuMachineName; // default auto: microvm with KVM, q35 with TCG (microvm has no timer to calibrate against under TCG)
  accel: 'auto' | 'kvm' | 'tcg'; // default auto: KVM when /dev/kvm is usable
  network: 'user' | 'tap'; // default user (loopback port forward); tap needs root and [drivers.network]
  runDir: string; // per-VM files; default /run/aleph-edge/vms
  /** The warm pool's VMs ([orchestrator] prewarm; docs/warm-pool.md): programs of this shape can be attached to one. */
  prewarm?: QemuPrewarmSettings;
}

export interface QemuPrewarmSettings {
  runtime: string; // prewarm_runtime: absolute runtime squashfs the pooled VMs boot on; '' = none (programs without a runtime); default ''
  memoryMib: number; // prewarm_memory_mib: default 128
  vcpus: number; // prewarm_vcpus: default 1
  /** prewarm_preload: modules a warm VM's Python imports before any program (docs/warm-pool.md); default ["fastapi"]; [] = no preloaded Python */
  preload: string[];
}

export interface FirecrackerDriverSettings {
  binary: string; // default 'firecracker'
  jailer: string; // '' = run firecracker directly (development); production: path to jailer
  kernel: string; // absolute; x86_64: ELF vmlinux or bzImage, aarch64: PE Image (required when orchestrator.driver = "firecracker")
  initramfs: string; // absolute; base initramfs: every VM boots kernel + initramfs, no drive is the root device
  rootfs: string; // absolute or ''; the default runtime squashfs (a read-only drive the init mounts under an overlay, never is_root_device)
  runDir: string; // API sockets and per-VM files without the jailer; default /run/aleph-edge/firecracker
  chrootBaseDir: string; // jailer --chroot-base-dir; default /srv/jailer
  uid: number; // jailer --uid; default 0 (set an unprivileged one in production)
  gid: number; // jailer --gid
  cgroupRoot: string; // cgroup_root: the cgroup v2 hierarchy the jailer uses; '' = the cgroup2 mount in /proc/mounts
  extraBootArgs: string; // extra_boot_args: appended to the guest kernel command line; default ''
  apiTimeoutMs: number; // api_timeout: the API socket must appear (and each API call answer) within this; default 5s
}

export interface NetworkDriverSettings {
  pool: string; // IPv4 CIDR; default 172.16.0.0/24
  prefix: number; // per-VM subnet; default 30
  tapPrefix: string; // tap names <prefix><slot>; default 'aetap'
  stateDir: string; // lease records for crash recovery; default /run/aleph-edge/net
  outboundInterface: string; // NAT egress for programs with internet = true; '' = none allowed
  ipv6Pool: string; // the node's IPv6 /64 (each VM gets a /124 of it); '' = no IPv6 for VMs
  hostPorts: { min: number; max: number }; // host ports for port forwards; default 24000-65535
}

export interface ProcessDriverSettings {
  python: string; // interpreter for ASGI programs; default 'python3' (PATH); a path with '/' is resolved against the config file
  forkServer?: boolean; // fork_server: local ASGI programs are forked from a pre-imported interpreter (docs/drivers.md); default (and absent) false
}

/** [drivers.snapshots]: VM state saved once a program is ready, restored instead of booting (docs/snapshots.md). */
export interface SnapshotSettings {
  enabled: boolean; // default false
  dir: string; // default /var/cache/aleph-edge/snapshots
  maxBytes: number; // max_size: the cache's bound, least recently used evicted first; default 4GiB
}

export interface DriversSettings {
  process: ProcessDriverSettings;
  qemu: QemuDriverSettings;
  firecracker: FirecrackerDriverSettings;
  network: NetworkDriverSettings;
  snapshots: SnapshotSettings;
}

export interface ProgramsSettings {
  source: 'local' | 'aleph';
  alephApi: string;
  local: LocalProgramSettings[];
  /** source = "aleph": present when source is "aleph" or any of its keys is set (defaults: defaultAlephSettings()). */
  aleph?: AlephProgramsSettings;
}

/** Keys under [programs] for programs from the Aleph network (src/programs/aleph/). */
export interface AlephProgramsSettings {
  cacheDir: string; // absolute; messages and artifacts; default /var/cache/aleph-edge/programs
  cacheMaxBytes: number; // total artifact cache size, LRU-evicted; default 10 GiB
  maxCodeBytes: number; // per kind caps on one artifact; code and data default 10 MiB
  maxDataBytes: number;
  maxRuntimeBytes: number; // default 2 GiB
  maxVolumeBytes: number; // immutable volumes; default 2 GiB
  maxRootfsBytes: number; // an instance's parent disk image (rootfs.parent); default 10 GiB
  volumesDir: string; // absolute; persistent (persistence = "host") volumes and instance disks, one folder per program; default /var/lib/aleph-edge/volumes
  ipfsGateway: string; // for item_type = "ipfs"; default https://ipfs.aleph.im
  downloadTimeoutMs: number; // one attempt of one download; default 120s
  downloadRetries: number; // extra attempts on transient errors; default 3
  allowProcessForNetwork: boolean; // run downloaded code with the process driver (under bubblewrap); default false
  subscribe: boolean; // follow /api/ws0/messages to drain amended/forgotten programs; default true
}

export interface RouteSettings {
  host: string; // lowercase
  program: string; // 64 lowercase hex
}

export interface RoutingSettings {
  dnsServers: string[]; // '' list = system resolvers; entries 'ip' or 'ip:port'
  txtCacheSize: number; // default 10000
  negativeTtlMs: number; // default 60s
  maxTtlMs: number; // default 1h: caps TTLs from DNS
  lookupTimeoutMs: number; // default 2s
}

/** [guest_api]: what running programs may call on the host (src/guestapi/, docs/guest-api.md). */
export interface GuestApiSettings {
  enabled: boolean; // default true
  redis: string; // 'redis://[user:password@]host[:port][/db]' or 'unix:/path/redis.sock'; default redis://127.0.0.1:6379
  socketDir: string; // absolute; per-execution sockets; '' in TOML = <dirname(status_socket)>/guest-api
  maxValueBytes: number; // one cache value; default 1 MiB
  maxKeys: number; // cache keys per program; default 1000
  keyTtlMs: number; // cache entries expire after this (the reference: 7 days)
  redisTimeoutMs: number; // connect and per-command limit; default 2s
  apiTimeoutMs: number; // one Aleph API pass-through request (whole answer); default 15s
  maxResponseBytes: number; // one pass-through answer; default 16 MiB (blobs from the artifact cache are not capped)
  maxConnections: number; // per execution; default 32
  idleTimeoutMs: number; // a guest connection without traffic is closed; default 60s
}

export interface Settings {
  /** Absolute path of the file these settings came from ('' for an in-memory config). */
  file: string;
  server: ServerSettings;
  tls: TlsSettings;
  orchestrator: OrchestratorSettings;
  programs: ProgramsSettings;
  routes: RouteSettings[];
  routing: RoutingSettings;
  guestApi: GuestApiSettings;
  /** VM driver settings; present when the file has a [drivers] table (defaults: defaultDriversSettings()). */
  drivers?: DriversSettings;
  /** The node's public API (src/nodeapi/); present when the file has a [node] table (defaults: defaultNodeSettings()). */
  node?: NodeSettings;
  /** /control/* (src/control/); present when the file has a [control] table (defaults: defaultControlSettings()). */
  control?: ControlSettings;
}

/** [control]: who may allocate programs to this node (the scheduler) and how long a signature lives. */
export interface ControlSettings {
  /** Ethereum addresses (lowercase) whose Aleph-EIP191-V1 signatures allocate; [] = the reference's built-in scheduler signer. */
  authorizedAllocationSigners: string[];
  /** sha256 hex of the deprecated X-Auth-Signature token; '' = that path is off. */
  allocationTokenHash: string;
  /** How far an allocation signature's iat may be from now; default 300s. */
  allocationSignatureMaxAgeMs: number;
}

/** [node]: what the node's public API serves and checks. */
export interface NodeSettings {
  checkProgram: string; // 64 hex; default: the shipped diagnostic program (registered automatically)
  /** The aleph-vm release whose node API this node answers: `Server: aleph-vm/<this>` (the network's monitor reads it). */
  alephVmVersion: string; // default ALEPH_VM_VERSION
  nodeHash: string | null; // 64 hex: this node's CRN registration hash (aleph-vm's NODE_HASH); null = not set
  stateDir: string; // absolute; the login secret lives here; '' = the directory holding tls.storage
  /** /status/check/host probes. */
  checks: {
    ipv4Url: string; // default https://9.9.9.9/ (any answer: 200 or 404 counts as egress)
    ipv6Url: string; // default https://[2620:fe::fe]/
    dnsHostname: string; // resolved for the dns check; default aleph.im
    domain: string; // resolved (and fetched over http) for the domain check; '' = server.domain
    timeoutMs: number; // per probe; default 5s
  };
  /** What the shipped diagnostic program probes (passed to it as environment variables). */
  diagnostic: {
    internetUrl: string; // GET, must answer 200 with a Server header; default https://aleph.im/
    ipv4Target: string; // host:port opened over TCP; default 9.9.9.9:53
    ipv6Target: string; // default [2620:fe::fe]:53
    dnsHostname: string; // default aleph.im
  };
}
