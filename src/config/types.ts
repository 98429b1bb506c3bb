// Typed settings produced by the loader. TOML keys are snake_case; fields here are
// camelCase. Durations are milliseconds, sizes bytes unless the name says MiB.
// Relative paths in the file are resolved against the config file's directory.

export interface ListenAddress {
  host: string; // '0.0.0.0', '::', '127.0.0.1' (no brackets)
  port: number;
}

export interface ServerSettings {
  domain: string; // lowercase, no trailing dot, no port
  httpsListen: ListenAddress[];
  httpListen: ListenAddress[];
  statusSocket: string; // absolute path
  statusSocketMode: number; // default 0o660
  drainTimeoutMs: number; // default 30s
  workers: number; // default 0 = one worker process per core; 1 = everything in one process
  limits: {
    maxHeaderBytes: number; // default 16 KiB
    headersTimeoutMs: number; // default 10s: time to receive complete headers (slowloris)
    requestTimeoutMs: number; // default 0 (none): whole-request receive timeout; bodies may be large
    keepAliveTimeoutMs: number; // default 5s
    maxBodyBytes: number; // default 0 = unlimited (streamed, never buffered)
    maxConnections: number; // default 0 = unlimited
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
}

export interface ProgramsSettings {
  source: 'local' | 'aleph';
  alephApi: string;
  local: LocalProgramSettings[];
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

export interface Settings {
  /** Absolute path of the file these settings came from ('' for an in-memory config). */
  file: string;
  server: ServerSettings;
  tls: TlsSettings;
  orchestrator: OrchestratorSettings;
  programs: ProgramsSettings;
  routes: RouteSettings[];
  routing: RoutingSettings;
}
