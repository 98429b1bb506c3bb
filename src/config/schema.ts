// The config schema: every key, its default and its checks, in one place. Built
// on TableReader so an empty document yields the defaults and every problem
// becomes an issue with its key path.

import { resolve } from 'node:path';
import { ASGI_APP_PATTERN, FIRECRACKER_CMDLINE_MAX, FIRECRACKER_MAX_VCPUS, firecrackerExtraBootArgsRoom, forbiddenBootArg, normalizeHash, parseIpv6Slash64 } from '../common/index.js';
import { IssueSink, TableReader, tomlType, type RawIssue, type RawTable } from './reader.js';
import type {
  AlephProgramsSettings,
  ChallengeType,
  DriverName,
  DriversSettings,
  GuestApiSettings,
  HttpProtocol,
  LocalAsgiSettings,
  LocalProgramSettings,
  LocalVmSettings,
  NodeSettings,
  ControlSettings,
  OrchestratorSettings,
  ProgramsSettings,
  RouteSettings,
  RoutingSettings,
  ServerSettings,
  Settings,
  TlsFilePair,
  TlsMode,
  TlsSettings,
} from './types.js';
import {
  checkDnsServer,
  checkHostname,
  checkHostPattern,
  checkHttpUrl,
  checkListenAddress,
  type Checked,
} from './validate.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const KIB = 1024;

export const DEFAULTS = {
  statusSocket: '/run/aleph-edge/status.sock',
  statusSocketMode: 0o660,
  tlsStorage: '/var/lib/aleph-edge/certs',
  acmeDirectory: 'https://acme-v02.api.letsencrypt.org/directory',
  alephApi: 'https://api2.aleph.im',
} as const;

const TLS_MODES: readonly TlsMode[] = ['acme', 'internal', 'files'];
const CHALLENGES: readonly ChallengeType[] = ['tls-alpn-01', 'http-01'];
const DRIVERS: readonly DriverName[] = ['process', 'qemu', 'firecracker'];
const SOURCES: readonly ProgramsSettings['source'][] = ['local', 'aleph'];

export interface SchemaContext {
  /** Directory relative paths resolve against (the config file's directory). */
  baseDir: string;
  /** Absolute path of the config file, or ''. */
  file: string;
}

export interface SchemaResult {
  settings: Settings;
  issues: RawIssue[];
}

/** Validates a parsed document; `settings` is only meaningful when `issues` is empty. */
export function buildSettings(document: RawTable, context: SchemaContext): SchemaResult {
  const sink = new IssueSink();
  const root = new TableReader(sink, [], document);
  const paths = new PathResolver(context.baseDir);

  const server = readServer(root.table('server'), paths);
  const tls = readTls(root.table('tls'), paths);
  const orchestrator = readOrchestrator(root.table('orchestrator'));
  const programs = readPrograms(root.table('programs'), paths, orchestrator.driver);
  const routes = readRoutes(root);
  const routing = readRouting(root.table('routing'));
  const drivers = readDrivers(root, paths);
  const node = readNode(root, paths);
  const guestApi = readGuestApi(root.table('guest_api'), paths, server.statusSocket);
  const control = readControl(root);
  root.finish();

  // HSTS by default only where the certificates are publicly trusted (ACME).
  if (server.hsts === undefined) server.hsts = tls.mode === 'acme' ? 'max-age=31536000' : '';
  const settings: Settings = { file: context.file, server, tls, orchestrator, programs, routes, routing, guestApi };
  if (drivers) settings.drivers = drivers;
  if (node) settings.node = node;
  if (control) settings.control = control;
  return { settings, issues: sink.issues };
}

class PathResolver {
  constructor(private readonly baseDir: string) {}
  /** '' stays '' (meaning "not set"); anything else becomes absolute. */
  resolve(path: string): string {
    return path === '' ? '' : resolve(this.baseDir, path);
  }
  get base(): string {
    return this.baseDir;
  }
}

function readServer(t: TableReader, paths: PathResolver): ServerSettings {
  const domain = t.checked('domain', '', checkHostname, true);
  const httpsListen = t.checkedArray('https_listen', [{ host: '0.0.0.0', port: 443 }, { host: '::', port: 443 }], checkListenAddress);
  const httpListen = t.checkedArray('http_listen', [{ host: '0.0.0.0', port: 80 }, { host: '::', port: 80 }], checkListenAddress);
  const statusSocket = paths.resolve(t.checked('status_socket', DEFAULTS.statusSocket, nonEmpty));
  const statusSocketMode = readFileMode(t, 'status_socket_mode', DEFAULTS.statusSocketMode);
  const drainTimeoutMs = t.duration('drain_timeout', 30 * SECOND);
  // 0 = one worker per core; 1 = a single process (no workers).
  const workers = t.int('workers', 0, { min: 0, max: 256 });
  const protocols = readProtocols(t);
  // Resolved against tls.mode by buildSettings when absent.
  const hsts = t.has('hsts') ? t.checked('hsts', '', checkHsts) : undefined;

  const l = t.table('limits');
  const limits: ServerSettings['limits'] = {
    maxHeaderBytes: l.size('max_header_bytes', 16 * KIB, 1),
    headersTimeoutMs: l.duration('headers_timeout', 10 * SECOND),
    requestTimeoutMs: l.duration('request_timeout', 0),
    keepAliveTimeoutMs: l.duration('keep_alive_timeout', 5 * SECOND),
    maxBodyBytes: l.size('max_body_bytes', 0),
    maxConnections: l.int('max_connections', 0, { min: 0 }),
    // Never 0: a handshake must not hold its connection forever.
    handshakeTimeoutMs: l.duration('handshake_timeout', 10 * SECOND, 100),
    maxHandshakesPerAddress: l.int('max_handshakes_per_address', 128, { min: 1 }),
    maxHandshakes: l.int('max_handshakes', 4096, { min: 1 }),
    h2MaxConcurrentStreams: l.int('h2_max_concurrent_streams', 100, { min: 1, max: 10_000 }),
    h2IdleTimeoutMs: l.duration('h2_idle_timeout', 60 * SECOND, 100),
    h1MaxPipelinedRequests: l.int('h1_max_pipelined_requests', 16, { min: 1, max: 10_000 }),
    // Never 0: a client that reads nothing must not hold a program connection forever.
    sendTimeoutMs: l.duration('send_timeout', 60 * SECOND, 100),
  };
  l.finish();
  t.finish();
  return { domain, httpsListen, httpListen, statusSocket, statusSocketMode, drainTimeoutMs, workers, protocols, hsts: hsts as string, limits };
}

function readProtocols(t: TableReader): HttpProtocol[] {
  const fallback: HttpProtocol[] = ['h1', 'h2'];
  if (!t.has('protocols')) {
    t.take('protocols');
    return fallback;
  }
  const values = t.stringArray('protocols', fallback);
  const bad = values.find((v) => v !== 'h1' && v !== 'h2');
  if (bad !== undefined) {
    t.issue('protocols', `unknown protocol "${bad}": use "h1" and/or "h2"`);
    return fallback;
  }
  if (values.length === 0) {
    t.issue('protocols', 'must name at least one of "h1", "h2"');
    return fallback;
  }
  return [...new Set(values as HttpProtocol[])];
}

// A Strict-Transport-Security value: max-age=<seconds>, optionally includeSubDomains and preload.
function checkHsts(text: string): Checked<string> {
  if (text === '') return { ok: true, value: '' };
  return /^max-age=\d{1,10}(\s*;\s*(includeSubDomains|preload))*$/i.test(text.trim())
    ? { ok: true, value: text.trim() }
    : { ok: false, message: `"${text}" is not a Strict-Transport-Security value (max-age=<seconds>[; includeSubDomains][; preload]; "" for none)` };
}

// Unix permission bits: TOML octal (0o660) or a string of octal digits ("0660").
function readFileMode(t: TableReader, key: string, fallback: number): number {
  const value = t.take(key);
  if (value === undefined) return fallback;
  let mode: number;
  if (typeof value === 'bigint') {
    mode = Number(value);
  } else if (typeof value === 'string' && /^(?:0o)?[0-7]{1,4}$/.test(value)) {
    mode = parseInt(value.replace(/^0o/, ''), 8);
  } else {
    t.issue(key, `expected a file mode like 0o660 or "0660", got ${typeof value === 'string' ? `"${value}"` : tomlType(value)}`);
    return fallback;
  }
  if (mode < 0 || mode > 0o777) {
    t.issue(key, `mode ${value} is out of range 0..0o777 (write octal as 0o660)`);
    return fallback;
  }
  return mode;
}

function readTls(t: TableReader, paths: PathResolver): TlsSettings {
  const mode = t.oneOf('mode', 'acme', TLS_MODES);
  // Checks that depend on the mode are skipped when the mode itself is wrong.
  const acme = mode === 'acme' && !t.hasIssue('mode');
  const storage = paths.resolve(t.checked('storage', DEFAULTS.tlsStorage, nonEmpty));
  const email = t.string('email', '');
  if (email !== '' && !/^[^@\s]+@[^@\s]+$/.test(email)) t.issue('email', `"${email}" is not an email address`);
  else if (acme && email === '' && !t.hasIssue('email')) t.issue('email', 'is required when mode = "acme"');

  const directory = t.checked('directory', DEFAULTS.acmeDirectory, checkHttpUrl);
  const directoryCa = paths.resolve(t.string('directory_ca', ''));
  const challenges = readChallenges(t, acme);
  const onDemand = t.bool('on_demand', true);
  const ask = t.checked('ask', '', (text) => (text === '' ? { ok: true, value: '' } : checkHttpUrl(text)));

  const rate = t.table('issue_rate');
  const issueRate = { burst: rate.int('burst', 5, { min: 1 }), intervalMs: rate.duration('interval', 60 * SECOND, 1) };
  rate.finish();

  const w = t.table('wildcard');
  const wildcard = { enabled: w.bool('enabled', false), dnsHook: w.string('dns_hook', '') };
  // A hook written with a slash is a path relative to the config; a bare name is looked up in PATH.
  if (wildcard.dnsHook.includes('/')) wildcard.dnsHook = paths.resolve(wildcard.dnsHook);
  if (wildcard.enabled && wildcard.dnsHook === '') w.issue('dns_hook', 'is required when wildcard is enabled');
  w.finish();

  const files = t.tables('files').map((entry) => readFilePair(entry, paths));
  if (mode === 'files' && files.length === 0) t.issue('mode', 'mode = "files" needs at least one [[tls.files]] entry');

  const cacheSize = t.int('cache_size', 1000, { min: 1 });

  let eab: TlsSettings['eab'] = null;
  const e = t.optionalTable('eab');
  if (e) {
    const kid = e.checked('kid', '', nonEmpty, true);
    const hmacKey = e.checked('hmac_key', '', nonEmpty, true);
    e.finish();
    eab = { kid, hmacKey };
  }
  t.finish();
  return { mode, storage, email, directory, directoryCa, challenges, onDemand, ask, issueRate, wildcard, files, cacheSize, eab };
}

function readChallenges(t: TableReader, acme: boolean): ChallengeType[] {
  const challenges = t.checkedArray<ChallengeType>('challenges', [...CHALLENGES], (text) =>
    (CHALLENGES as readonly string[]).includes(text)
      ? { ok: true, value: text as ChallengeType }
      : { ok: false, message: `must be one of ${CHALLENGES.join(', ')}; got "${text}"` },
  );
  const unique = [...new Set(challenges)];
  if (unique.length !== challenges.length) t.issue('challenges', 'lists a challenge twice');
  if (acme && unique.length === 0 && !t.hasIssue('challenges')) {
    t.issue('challenges', 'must not be empty when mode = "acme"');
  }
  return unique;
}

function readFilePair(t: TableReader, paths: PathResolver): TlsFilePair {
  let hosts: string[] = [];
  if (t.require('hosts')) {
    hosts = t.checkedArray('hosts', [], checkHostPattern);
    if (hosts.length === 0 && !t.hasIssue('hosts')) t.issue('hosts', 'must list at least one host');
  }
  const cert = paths.resolve(t.checked('cert', '', nonEmpty, true));
  const key = paths.resolve(t.checked('key', '', nonEmpty, true));
  t.finish();
  return { hosts, cert, key };
}

function readOrchestrator(t: TableReader): OrchestratorSettings {
  const settings: OrchestratorSettings = {
    driver: t.oneOf('driver', 'process', DRIVERS),
    idleTimeoutMs: t.duration('idle_timeout', 60 * MINUTE),
    bootTimeoutMs: t.duration('boot_timeout', 20 * SECOND, 1),
    requestTimeoutMs: t.duration('request_timeout', 30 * SECOND),
    maxVms: t.int('max_vms', 64, { min: 1 }),
    memoryBudgetMib: t.int('memory_budget_mib', 8192, { min: 1 }),
    holdQueue: t.int('hold_queue', 100, { min: 1 }),
    stopGraceMs: t.duration('stop_grace', 5 * SECOND),
    prewarm: t.int('prewarm', 0, { min: 0 }),
  };
  t.finish();
  return settings;
}

function readPrograms(t: TableReader, paths: PathResolver, driver: DriverName): ProgramsSettings {
  const source = t.oneOf('source', 'local', SOURCES);
  const alephApi = t.checked('aleph_api', DEFAULTS.alephApi, checkHttpUrl);
  const entries = t.tables('local');
  const local = entries.map((entry) => readLocalProgram(entry, paths));
  if (driver === 'firecracker') {
    // machine-config's limits, at check-config rather than as a 400 at the first boot.
    local.forEach((program, index) => {
      if (program.vcpus > FIRECRACKER_MAX_VCPUS) entries[index]!.issue('vcpus', `must be at most ${FIRECRACKER_MAX_VCPUS} with the firecracker driver (machine-config vcpu_count is 1-${FIRECRACKER_MAX_VCPUS}), got ${program.vcpus}`);
    });
  }

  // Duplicates point at the later entry: the earlier one is the "real" definition.
  const seenHashes = new Map<string, number>();
  const seenNames = new Map<string, number>();
  local.forEach((program, index) => {
    const entry = entries[index]!;
    if (program.hash !== '') {
      const first = seenHashes.get(program.hash);
      if (first !== undefined) entry.issue('hash', `duplicate hash: already used by programs.local[${first}]`);
      else seenHashes.set(program.hash, index);
    }
    if (program.name !== '') {
      const first = seenNames.get(program.name);
      if (first !== undefined) entry.issue('name', `duplicate name "${program.name}": already used by programs.local[${first}]`);
      else seenNames.set(program.name, index);
    }
  });
  const aleph = readAlephPrograms(t, paths, source === 'aleph');
  t.finish();
  const programs: ProgramsSettings = { source, alephApi, local };
  if (aleph) programs.aleph = aleph;
  return programs;
}

const ALEPH_KEYS = [
  'cache_dir', 'cache_max_size', 'max_code_size', 'max_data_size', 'max_runtime_size', 'max_volume_size', 'max_rootfs_size',
  'volumes_dir', 'ipfs_gateway', 'download_timeout', 'download_retries', 'allow_process_for_network', 'subscribe',
];

/** Defaults of the [programs] keys for source = "aleph". */
export function defaultAlephSettings(): AlephProgramsSettings {
  return {
    cacheDir: '/var/cache/aleph-edge/programs',
    cacheMaxBytes: 10 * 1024 ** 3,
    maxCodeBytes: 10 * 1024 ** 2,
    maxDataBytes: 10 * 1024 ** 2,
    maxRuntimeBytes: 2 * 1024 ** 3,
    maxVolumeBytes: 2 * 1024 ** 3,
    maxRootfsBytes: 10 * 1024 ** 3,
    volumesDir: '/var/lib/aleph-edge/volumes',
    ipfsGateway: 'https://ipfs.aleph.im',
    downloadTimeoutMs: 120 * SECOND,
    downloadRetries: 3,
    allowProcessForNetwork: false,
    subscribe: true,
  };
}

// The [programs] keys of source = "aleph"; read when one is set or the source is aleph
// (so the defaults of a plain local config stay as they were).
function readAlephPrograms(t: TableReader, paths: PathResolver, enabled: boolean): AlephProgramsSettings | undefined {
  if (!enabled && !ALEPH_KEYS.some((key) => t.has(key))) return undefined;
  const d = defaultAlephSettings();
  const settings: AlephProgramsSettings = {
    cacheDir: paths.resolve(t.checked('cache_dir', d.cacheDir, nonEmpty)),
    cacheMaxBytes: t.size('cache_max_size', d.cacheMaxBytes, 1),
    maxCodeBytes: t.size('max_code_size', d.maxCodeBytes, 1),
    maxDataBytes: t.size('max_data_size', d.maxDataBytes, 1),
    maxRuntimeBytes: t.size('max_runtime_size', d.maxRuntimeBytes, 1),
    maxVolumeBytes: t.size('max_volume_size', d.maxVolumeBytes, 1),
    maxRootfsBytes: t.size('max_rootfs_size', d.maxRootfsBytes, 1),
    volumesDir: paths.resolve(t.checked('volumes_dir', d.volumesDir, nonEmpty)),
    ipfsGateway: t.checked('ipfs_gateway', d.ipfsGateway, checkHttpUrl),
    downloadTimeoutMs: t.duration('download_timeout', d.downloadTimeoutMs, 1),
    downloadRetries: t.int('download_retries', d.downloadRetries, { min: 0, max: 10 }),
    allowProcessForNetwork: t.bool('allow_process_for_network', d.allowProcessForNetwork),
    subscribe: t.bool('subscribe', d.subscribe),
  };
  return settings;
}

function readLocalProgram(t: TableReader, paths: PathResolver): LocalProgramSettings {
  const hash = t.checked('hash', '', checkHash, true);
  const name = t.string('name', '');
  let command: string[] = [];
  // An ASGI program is started by our server; a VM program (with `code`) needs no
  // command; a process program does.
  const asgiProgram = t.has('asgi');
  const vmProgram = !asgiProgram && t.has('code');
  if (asgiProgram) {
    if (t.has('command')) t.issue('command', 'not used with asgi: the ASGI server (guest/aleph_asgi) is the command; remove one of them');
    t.take('command');
  } else if (vmProgram && !t.has('command')) {
    t.take('command');
  } else if (t.require('command', 'is required: the program and its arguments, like ["node", "server.js"]')) {
    command = t.stringArray('command', []);
    if (!t.hasIssue('command') && (command.length === 0 || command[0] === '')) {
      t.issue('command', 'must start with a non-empty program name');
    }
  }
  // Relative to the config file, like every other path; '' or absent means that directory.
  const cwdText = t.string('cwd', '');
  const cwd = cwdText === '' ? paths.base : paths.resolve(cwdText);
  const env = readEnv(t);
  const settings: LocalProgramSettings = {
    hash,
    name,
    command,
    cwd,
    env,
    memoryMib: t.int('memory_mib', 128, { min: 1 }),
    vcpus: t.int('vcpus', 1, { min: 1 }),
    healthPath: t.checked('health_path', '', (text) =>
      text === '' || text.startsWith('/') ? { ok: true, value: text } : { ok: false, message: `must start with "/", got "${text}"` },
    ),
    requestTimeoutMs: t.duration('request_timeout', 0),
  };
  if (vmProgram) settings.vm = readLocalVm(t, paths);
  if (asgiProgram) {
    settings.asgi = readLocalAsgi(t, paths);
    if (cwdText === '') settings.cwd = settings.asgi.code;
  }
  t.finish();
  return settings;
}

function readLocalAsgi(t: TableReader, paths: PathResolver): LocalAsgiSettings {
  const app = t.checked('asgi', '', (text) =>
    ASGI_APP_PATTERN.test(text)
      ? { ok: true, value: text }
      : { ok: false, message: `must be "module:attribute" with Python identifiers, like "main:app", got "${text}"` },
  );
  const code = t.require('code', 'is required with asgi: the folder holding the app, relative to this file')
    ? paths.resolve(t.checked('code', '', nonEmpty))
    : '';
  return { app, code };
}

function readLocalVm(t: TableReader, paths: PathResolver): LocalVmSettings {
  return {
    code: paths.resolve(t.checked('code', '', nonEmpty)),
    entrypoint: t.checked('entrypoint', '/app/start', (text) =>
      text.startsWith('/') ? { ok: true, value: text } : { ok: false, message: `must be an absolute path inside the guest, got "${text}"` },
    ),
    kernel: paths.resolve(t.string('kernel', '')),
    initramfs: paths.resolve(t.string('initramfs', '')),
    internet: t.bool('internet', false),
  };
}

/** Defaults of the [drivers.*] sections (used when the file has no [drivers] table). */
export function defaultDriversSettings(): DriversSettings {
  return {
    process: { python: 'python3' },
    qemu: { binary: 'qemu-system-x86_64', kernel: '', initramfs: '', machine: 'auto', accel: 'auto', network: 'user', runDir: '/run/aleph-edge/vms' },
    firecracker: {
      binary: 'firecracker',
      jailer: '',
      kernel: '',
      initramfs: '',
      rootfs: '',
      runDir: '/run/aleph-edge/firecracker',
      chrootBaseDir: '/srv/jailer',
      cgroupRoot: '',
      uid: 0,
      gid: 0,
      extraBootArgs: '',
      apiTimeoutMs: 5 * SECOND,
    },
    network: { pool: '172.16.0.0/24', prefix: 30, tapPrefix: 'aetap', stateDir: '/run/aleph-edge/net', outboundInterface: '', ipv6Pool: '', hostPorts: { min: 24000, max: 65535 } },
    snapshots: { enabled: false, dir: '/var/cache/aleph-edge/snapshots', maxBytes: 4 * 1024 * 1024 * KIB },
  };
}

// [drivers.qemu], [drivers.firecracker], [drivers.network]. Whether the selected
// driver has what it needs (kernel, initramfs, binaries) is checked when it starts
// (checkQemuOptions, checkFirecrackerOptions), with one message per missing piece.
function readDrivers(root: TableReader, paths: PathResolver): DriversSettings | undefined {
  const d = root.optionalTable('drivers');
  if (!d) return undefined;
  const defaults = defaultDriversSettings();
  const p = d.table('process');
  const processSettings: DriversSettings['process'] = { python: p.checked('python', defaults.process.python, nonEmpty), forkServer: p.bool('fork_server', false) };
  if (processSettings.python.includes('/')) processSettings.python = paths.resolve(processSettings.python);
  p.finish();
  const q = d.table('qemu');
  const qemu: DriversSettings['qemu'] = {
    binary: q.checked('binary', defaults.qemu.binary, nonEmpty),
    kernel: paths.resolve(q.string('kernel', '')),
    initramfs: paths.resolve(q.string('initramfs', '')),
    machine: q.oneOf('machine', defaults.qemu.machine, ['auto', 'microvm', 'q35'] as const),
    accel: q.oneOf('accel', defaults.qemu.accel, ['auto', 'kvm', 'tcg'] as const),
    network: q.oneOf('network', defaults.qemu.network, ['user', 'tap'] as const),
    runDir: paths.resolve(q.checked('run_dir', defaults.qemu.runDir, nonEmpty)),
    prewarm: {
      runtime: paths.resolve(q.string('prewarm_runtime', '')),
      memoryMib: q.int('prewarm_memory_mib', 128, { min: 16 }),
      vcpus: q.int('prewarm_vcpus', 1, { min: 1 }),
      preload: q.checkedArray('prewarm_preload', ['fastapi'], pythonModule),
    },
  };
  q.finish();

  const f = d.table('firecracker');
  const firecracker: DriversSettings['firecracker'] = {
    binary: f.checked('binary', defaults.firecracker.binary, nonEmpty),
    jailer: f.string('jailer', ''),
    kernel: paths.resolve(f.string('kernel', '')),
    initramfs: paths.resolve(f.string('initramfs', '')),
    rootfs: paths.resolve(f.string('rootfs', '')),
    runDir: paths.resolve(f.checked('run_dir', defaults.firecracker.runDir, nonEmpty)),
    chrootBaseDir: paths.resolve(f.checked('chroot_base_dir', defaults.firecracker.chrootBaseDir, nonEmpty)),
    cgroupRoot: paths.resolve(f.string('cgroup_root', '')),
    uid: f.int('uid', 0, { min: 0 }),
    gid: f.int('gid', 0, { min: 0 }),
    apiTimeoutMs: f.duration('api_timeout', defaults.firecracker.apiTimeoutMs, 1),
    extraBootArgs: f.checked('extra_boot_args', '', checkExtraBootArgs),
  };
  if (firecracker.jailer.includes('/')) firecracker.jailer = paths.resolve(firecracker.jailer);
  if (firecracker.binary.includes('/')) firecracker.binary = paths.resolve(firecracker.binary);
  f.finish();
  if (qemu.binary.includes('/')) qemu.binary = paths.resolve(qemu.binary);

  const n = d.table('network');
  const network: DriversSettings['network'] = {
    pool: n.checked('pool', defaults.network.pool, checkIpv4Network),
    prefix: n.int('prefix', defaults.network.prefix, { min: 8, max: 30 }),
    tapPrefix: n.checked('tap_prefix', defaults.network.tapPrefix, (text) =>
      /^[a-zA-Z][a-zA-Z0-9-]{0,9}$/.test(text) ? { ok: true, value: text } : { ok: false, message: 'must be 1-10 letters, digits or "-", starting with a letter' },
    ),
    stateDir: paths.resolve(n.checked('state_dir', defaults.network.stateDir, nonEmpty)),
    outboundInterface: n.string('outbound_interface', ''),
    ipv6Pool: n.checked('ipv6_pool', defaults.network.ipv6Pool, (text) =>
      text === '' || parseIpv6Slash64(text) !== undefined ? { ok: true, value: text } : { ok: false, message: `"${text}" is not an IPv6 /64 like 2001:db8:1:2::/64 (the node's /64, no host bits)` },
    ),
    hostPorts: n.checked('host_ports', defaults.network.hostPorts, checkPortRange),
  };
  if (network.ipv6Pool !== '' && network.outboundInterface === '') n.issue('ipv6_pool', 'needs outbound_interface: the NDP proxy answers for the VMs on it');
  n.finish();
  const s = d.table('snapshots');
  const snapshots: DriversSettings['snapshots'] = {
    enabled: s.bool('enabled', defaults.snapshots.enabled),
    dir: paths.resolve(s.checked('dir', defaults.snapshots.dir, nonEmpty)),
    maxBytes: s.size('max_size', defaults.snapshots.maxBytes, 1024 * KIB),
  };
  s.finish();
  d.finish();
  return { process: processSettings, qemu, firecracker, network, snapshots };
}

// Operator kernel arguments: within what Firecracker's command line leaves after
// ours and its own per-device entries, and none that contradict the boot layout.
function checkExtraBootArgs(text: string): Checked<string> {
  const room = firecrackerExtraBootArgsRoom();
  if (Buffer.byteLength(text) > room) {
    return { ok: false, message: `is ${Buffer.byteLength(text)} bytes; Firecracker's kernel command line (${FIRECRACKER_CMDLINE_MAX + 1} bytes with its NUL) leaves ${room} after the driver's arguments and its own virtio_mmio.device= entries` };
  }
  for (const arg of text.split(/\s+/).filter(Boolean)) {
    const why = forbiddenBootArg(arg);
    if (why) return { ok: false, message: `"${arg}": ${why}` };
  }
  return { ok: true, value: text.trim() };
}

// "min-max": host ports handed out for port forwards.
function checkPortRange(text: string): Checked<{ min: number; max: number }> {
  const match = /^(\d{1,5})-(\d{1,5})$/.exec(text);
  const [min, max] = match ? [Number(match[1]), Number(match[2])] : [NaN, NaN];
  if (!match || min < 1 || max > 65535 || min > max) return { ok: false, message: `"${text}" is not a port range like 24000-65535` };
  return { ok: true, value: { min, max } };
}

// "a.b.c.d/n" with n <= 30 and no host bits set.
function checkIpv4Network(text: string): Checked<string> {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(text);
  const octets = match ? match.slice(1, 5).map(Number) : [];
  const prefix = match ? Number(match[5]) : NaN;
  if (!match || octets.some((o) => o > 255) || prefix > 30) return { ok: false, message: `"${text}" is not an IPv4 CIDR like 172.16.0.0/24 (prefix at most /30)` };
  const address = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if ((address & mask) >>> 0 !== address) return { ok: false, message: `"${text}" has host bits set; the network is ${[address & mask].map((a) => [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join('.'))[0]}/${prefix}` };
  return { ok: true, value: text };
}

/**
 * Hash of the diagnostic program shipped in examples/diagnostic/: sha256 of its name
 * ("aleph-edge diagnostic program"), not of its content,
 * so that the URL monitors call stays the same across releases.
 */
export const DIAGNOSTIC_PROGRAM_HASH = '506472294cc45a5763f64371ae56cee4b41a98d608184b6265c7577c99df518a';

/**
 * The aleph-vm release whose node API aleph-edge implements (routes, shapes, checks).
 * The network's monitor scores a node by the version in `Server: aleph-vm/<version>`,
 * valid only when it names a known aleph-vm release.
 */
export const ALEPH_VM_VERSION = '1.14.0';

/** Defaults of [node] (used when the file has no [node] table). */
export function defaultNodeSettings(): NodeSettings {
  return {
    checkProgram: DIAGNOSTIC_PROGRAM_HASH,
    alephVmVersion: ALEPH_VM_VERSION,
    nodeHash: null,
    stateDir: '',
    checks: { ipv4Url: 'https://9.9.9.9/', ipv6Url: 'https://[2620:fe::fe]/', dnsHostname: 'aleph.im', domain: '', timeoutMs: 5 * SECOND },
    diagnostic: { internetUrl: 'https://aleph.im/', ipv4Target: '9.9.9.9:53', ipv6Target: '[2620:fe::fe]:53', dnsHostname: 'aleph.im' },
  };
}

function readNode(root: TableReader, paths: PathResolver): NodeSettings | undefined {
  const t = root.optionalTable('node');
  if (!t) return undefined;
  const d = defaultNodeSettings();
  const checkProgram = t.checked('check_program', d.checkProgram, checkHash);
  const alephVmVersion = t.checked('aleph_vm_version', d.alephVmVersion, checkReleaseName);
  const nodeHash = t.checked<string | null>('node_hash', null, (text) => {
    const hash = normalizeHash(text);
    return hash ? { ok: true, value: hash } : { ok: false, message: `"${text.slice(0, 80)}" is not a node hash (64 hex characters: the item hash of the node's registration)` };
  });
  const stateDir = paths.resolve(t.string('state_dir', ''));
  const c = t.table('checks');
  const checks: NodeSettings['checks'] = {
    ipv4Url: c.checked('ipv4_url', d.checks.ipv4Url, checkHttpUrl),
    ipv6Url: c.checked('ipv6_url', d.checks.ipv6Url, checkHttpUrl),
    dnsHostname: c.checked('dns_hostname', d.checks.dnsHostname, checkHostname),
    domain: c.checked('domain', '', (text) => (text === '' ? { ok: true, value: '' } : checkHostname(text))),
    timeoutMs: c.duration('timeout', d.checks.timeoutMs, 1),
  };
  c.finish();
  const g = t.table('diagnostic');
  const diagnostic: NodeSettings['diagnostic'] = {
    internetUrl: g.checked('internet_url', d.diagnostic.internetUrl, checkHttpUrl),
    ipv4Target: g.checked('ipv4_target', d.diagnostic.ipv4Target, checkHostPort),
    ipv6Target: g.checked('ipv6_target', d.diagnostic.ipv6Target, checkHostPort),
    dnsHostname: g.checked('dns_hostname', d.diagnostic.dnsHostname, checkHostname),
  };
  g.finish();
  t.finish();
  return { checkProgram, alephVmVersion, nodeHash, stateDir, checks, diagnostic };
}

// A release name as aleph-vm tags them ("1.14.0", "1.2.0-rc3"): it goes into a header and
// must be what the monitor's `^aleph-vm/(.*)$` captures whole.
function checkReleaseName(text: string): Checked<string> {
  return /^[0-9A-Za-z][0-9A-Za-z.+~-]{0,63}$/.test(text)
    ? { ok: true, value: text }
    : { ok: false, message: `"${text.slice(0, 80)}" is not a release name like "1.14.0" (letters, digits, ".", "+", "~", "-")` };
}

/** The reference's DEFAULT_ALLOCATION_SIGNERS: the network scheduler's key. */
export const DEFAULT_ALLOCATION_SIGNERS = ['0x2937f62e5f81a88e921f883f8fe56cecf4a4a44a'];

/** Defaults of [control] (used when the file has no [control] table). */
export function defaultControlSettings(): ControlSettings {
  return { authorizedAllocationSigners: [], allocationTokenHash: '', allocationSignatureMaxAgeMs: 300 * SECOND };
}

function readControl(root: TableReader): ControlSettings | undefined {
  const t = root.optionalTable('control');
  if (!t) return undefined;
  const d = defaultControlSettings();
  const authorizedAllocationSigners = t.checkedArray('authorized_allocation_signers', d.authorizedAllocationSigners, (text) =>
    /^0x[0-9a-fA-F]{40}$/.test(text) ? { ok: true, value: text.toLowerCase() } : { ok: false, message: `"${text}" is not an Ethereum address (0x and 40 hex digits)` });
  const allocationTokenHash = t.checked('allocation_token_hash', d.allocationTokenHash, (text) =>
    text === '' || /^[0-9a-fA-F]{64}$/.test(text) ? { ok: true, value: text.toLowerCase() } : { ok: false, message: 'must be a sha256 in hex (64 digits), or "" to refuse X-Auth-Signature' });
  const allocationSignatureMaxAgeMs = t.duration('allocation_signature_max_age', d.allocationSignatureMaxAgeMs, SECOND);
  t.finish();
  return { authorizedAllocationSigners, allocationTokenHash, allocationSignatureMaxAgeMs };
}

// "host:port" or "[v6]:port".
function checkHostPort(text: string): Checked<string> {
  return /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(text) && Number(text.slice(text.lastIndexOf(':') + 1)) <= 65535
    ? { ok: true, value: text }
    : { ok: false, message: `"${text}" is not host:port (IPv6 in brackets: [2620:fe::fe]:53)` };
}

function readEnv(t: TableReader): Record<string, string> {
  const table = t.table('env');
  const env: Record<string, string> = {};
  for (const name of table.keys()) {
    if (name === '' || name.includes('=')) {
      table.issue(name, 'is not a valid environment variable name');
      table.take(name);
      continue;
    }
    const value = table.take(name);
    if (typeof value === 'string') env[name] = value;
    else table.issue(name, `expected a string, got ${tomlType(value)}`);
  }
  table.finish();
  return env;
}

function readRoutes(root: TableReader): RouteSettings[] {
  const entries = root.tables('routes');
  const seen = new Map<string, number>();
  return entries.map((t, index) => {
    const host = t.checked('host', '', checkHostname, true);
    const program = t.checked('program', '', checkHash, true);
    t.finish();
    if (host !== '') {
      const first = seen.get(host);
      if (first !== undefined) t.issue('host', `duplicate route for "${host}": already defined by routes[${first}]`);
      else seen.set(host, index);
    }
    return { host, program };
  });
}

/** Defaults of [guest_api]; socketDir follows the status socket. */
export function defaultGuestApiSettings(statusSocket: string = DEFAULTS.statusSocket): GuestApiSettings {
  return {
    enabled: true,
    redis: 'redis://127.0.0.1:6379',
    socketDir: resolve(statusSocket, '..', 'guest-api'),
    maxValueBytes: 1024 * KIB,
    maxKeys: 1000,
    keyTtlMs: 7 * 24 * HOUR,
    redisTimeoutMs: 2 * SECOND,
    apiTimeoutMs: 15 * SECOND,
    maxResponseBytes: 16 * 1024 * KIB,
    maxConnections: 32,
    idleTimeoutMs: 60 * SECOND,
  };
}

function readGuestApi(t: TableReader, paths: PathResolver, statusSocket: string): GuestApiSettings {
  const d = defaultGuestApiSettings(statusSocket);
  const socketDir = t.string('socket_dir', '');
  const settings: GuestApiSettings = {
    enabled: t.bool('enabled', d.enabled),
    redis: t.checked('redis', d.redis, checkRedisAddress),
    socketDir: socketDir === '' ? d.socketDir : paths.resolve(socketDir),
    // Redis takes values up to 512 MiB; a cache entry far below that.
    maxValueBytes: t.size('max_value_size', d.maxValueBytes, 1),
    maxKeys: t.int('max_keys', d.maxKeys, { min: 1, max: 1_000_000 }),
    keyTtlMs: t.duration('key_ttl', d.keyTtlMs, 1000),
    redisTimeoutMs: t.duration('redis_timeout', d.redisTimeoutMs, 1),
    apiTimeoutMs: t.duration('api_timeout', d.apiTimeoutMs, 1),
    maxResponseBytes: t.size('max_response_size', d.maxResponseBytes, 1),
    maxConnections: t.int('max_connections', d.maxConnections, { min: 1, max: 10_000 }),
    idleTimeoutMs: t.duration('idle_timeout', d.idleTimeoutMs, 1),
  };
  if (settings.maxValueBytes > 512 * 1024 * KIB) t.issue('max_value_size', 'must be at most 512MiB (the Redis limit)');
  // Unix socket paths are limited to 107 bytes; an execution's socket adds ~30.
  if (settings.socketDir.length > 76) t.issue('socket_dir', `"${settings.socketDir}" is too long for unix socket paths (at most 76 characters)`);
  t.finish();
  return settings;
}

// redis://[user:password@]host[:port][/db] or unix:/absolute/path.
function checkRedisAddress(text: string): Checked<string> {
  if (text.startsWith('unix:')) {
    return text.length > 5 && text[5] === '/' ? { ok: true, value: text } : { ok: false, message: `"${text}" must be unix:/absolute/path` };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, message: `"${text}" is not redis://host:port or unix:/path` };
  }
  if (url.protocol !== 'redis:' || url.hostname === '' || url.search !== '' || url.hash !== '' || !/^\/?\d*$/.test(url.pathname)) {
    return { ok: false, message: `"${text}" is not redis://[user:password@]host[:port][/db] or unix:/path` };
  }
  return { ok: true, value: text };
}

function readRouting(t: TableReader): RoutingSettings {
  const settings: RoutingSettings = {
    dnsServers: t.checkedArray('dns_servers', [], checkDnsServer),
    txtCacheSize: t.int('txt_cache_size', 10_000, { min: 1 }),
    negativeTtlMs: t.duration('negative_ttl', 60 * SECOND),
    maxTtlMs: t.duration('max_ttl', HOUR),
    lookupTimeoutMs: t.duration('lookup_timeout', 2 * SECOND, 1),
  };
  t.finish();
  return settings;
}

function checkHash(text: string): Checked<string> {
  const hash = normalizeHash(text);
  return hash ? { ok: true, value: hash } : { ok: false, message: `"${text}" is not a program hash (64 hex characters)` };
}

function nonEmpty(text: string): Checked<string> {
  return text === '' ? { ok: false, message: 'must not be empty' } : { ok: true, value: text };
}

/** A Python module name for the warm pool's preloaded interpreter (it goes on the guest kernel's command line). */
function pythonModule(text: string): Checked<string> {
  return /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(text) && text.length <= 100
    ? { ok: true, value: text }
    : { ok: false, message: `"${text}" is not a Python module name` };
}
