// Shape checks for the Aleph messages a node acts on: PROGRAM (content.type =
// "vm-function"), INSTANCE (a VM booting its own disk, see parseInstanceMessage) and STORE. Everything arriving from the API is `unknown` until it
// passes through here; a failed check names the field, so the 404 says what is wrong.
//
// Inline messages (item_type = "inline") carry their content as the JSON text
// `item_content`, whose sha256 is the message's item_hash: that is checked, and
// the content is parsed from that text (not from the API's decoded `content`), so
// an API cannot hand us a different program under a known hash. For messages
// stored elsewhere (item_type storage/ipfs) the decoded `content` is taken as given.

import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { ASGI_APP_PATTERN } from '../../common/index.js';

export class MessageError extends Error {
  override readonly name = 'MessageError';
}

export type CodeEncoding = 'plain' | 'zip' | 'squashfs';
export type ProgramInterface = 'asgi' | 'binary';

export interface RefSpec {
  ref: string; // 64 hex: the hash of a STORE message
  useLatest: boolean; // follow the newest amend of that STORE message
}

export interface CodeSpec extends RefSpec {
  encoding: CodeEncoding;
  entrypoint: string;
  interface: ProgramInterface;
  args: string[];
}

export interface DataSpec extends RefSpec {
  encoding: CodeEncoding;
  mount: string;
}

export type VolumeSpec =
  | ({ kind: 'immutable'; mount: string } & RefSpec)
  | { kind: 'ephemeral'; mount: string; sizeMib: number }
  | { kind: 'persistent'; mount: string; name: string; persistence: 'host' | 'store'; sizeMib: number };

export interface ProgramSpec {
  hash: string;
  sender: string;
  time: number;
  code: CodeSpec;
  runtime: RefSpec & { comment: string };
  data: DataSpec | undefined;
  volumes: VolumeSpec[];
  variables: Record<string, string>;
  resources: { vcpus: number; memoryMib: number; seconds: number };
  internet: boolean;
  allowAmend: boolean;
  replaces: string | undefined;
  /** `on.persistent`: the scheduler allocates it to nodes that keep it running. */
  persistent: boolean;
}

export interface StoreSpec {
  hash: string;
  sender: string;
  time: number;
  itemType: 'storage' | 'ipfs';
  itemHash: string; // sha256 hex (storage) or an IPFS CID
  ref: string | undefined; // the STORE message this one amends
  size: number | undefined;
}

const HEX64 = /^[0-9a-f]{64}$/;
const CID = /^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{50,120})$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENCODINGS: readonly CodeEncoding[] = ['plain', 'zip', 'squashfs'];
/** Where the VM guest has its own mounts (src/drivers/vm/layout.ts). */
const RESERVED_MOUNTS = ['/proc', '/sys', '/dev', '/run', '/opt/code', '/opt/aleph-guest'];

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A reader that names the field of every failure. */
class Fields {
  constructor(private readonly obj: Obj, private readonly where: string) {}

  fail(key: string, message: string): never {
    throw new MessageError(`${this.where}${key}: ${message}`);
  }
  entries(): [string, unknown][] {
    return Object.entries(this.obj);
  }
  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }
  object(key: string): Fields {
    const value = this.obj[key];
    if (!isObj(value)) this.fail(key, 'expected an object');
    return new Fields(value, `${this.where}${key}.`);
  }
  optObject(key: string): Fields | undefined {
    return this.has(key) ? this.object(key) : undefined;
  }
  string(key: string, fallback?: string): string {
    const value = this.obj[key];
    if ((value === undefined || value === null) && fallback !== undefined) return fallback;
    if (typeof value !== 'string') this.fail(key, 'expected a string');
    return value;
  }
  hash(key: string): string {
    const value = this.string(key);
    if (!HEX64.test(value)) this.fail(key, 'expected a 64-hex item hash');
    return value;
  }
  bool(key: string, fallback: boolean): boolean {
    const value = this.obj[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') this.fail(key, 'expected true or false');
    return value;
  }
  number(key: string, { min, max, int, fallback }: { min: number; max: number; int?: boolean; fallback?: number }): number {
    const value = this.obj[key];
    if ((value === undefined || value === null) && fallback !== undefined) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(key, 'expected a number');
    if (int && !Number.isInteger(value)) this.fail(key, 'expected an integer');
    if (value < min || value > max) this.fail(key, `${value} is out of range ${min}..${max}`);
    return value;
  }
  array(key: string): unknown[] {
    const value = this.obj[key];
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) this.fail(key, 'expected an array');
    return value;
  }
  mount(key: string): string {
    const value = this.string(key);
    if (!value.startsWith('/') || value.includes('\0') || posix.normalize(value) !== value || value.split('/').includes('..') || value === '/') {
      this.fail(key, `"${value}" is not a normalized absolute mount point`);
    }
    // The guest init reads mount points as words; these paths are its own.
    if (!/^[\x21-\x7e]+$/.test(value)) this.fail(key, `"${value}" must not contain spaces or control characters`);
    if (RESERVED_MOUNTS.some((r) => value === r || value.startsWith(`${r}/`))) this.fail(key, `"${value}" is reserved inside the VM`);
    return value;
  }
  sizeMib(): number {
    if (!this.has('size_mib')) this.fail('size_mib', 'is required (the volume size in MiB)');
    return this.number('size_mib', { min: 1, max: 1 << 20, int: true });
  }
  refSpec(): RefSpec {
    return { ref: this.hash('ref'), useLatest: this.bool('use_latest', false) };
  }
  encoding(key: string): CodeEncoding {
    const value = this.string(key);
    if (!(ENCODINGS as readonly string[]).includes(value)) this.fail(key, `unsupported encoding "${value}"`);
    return value as CodeEncoding;
  }
}

/** The decoded content of a message, integrity-checked for inline messages. */
function contentOf(message: Obj, hash: string): Obj {
  const itemType = message.item_type ?? 'inline';
  if (itemType === 'inline') {
    const text = message.item_content;
    if (typeof text !== 'string') throw new MessageError('item_content: missing for an inline message');
    const digest = createHash('sha256').update(text).digest('hex');
    if (digest !== hash) throw new MessageError('item_content does not hash to the item_hash');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new MessageError('item_content: not JSON');
    }
    if (!isObj(parsed)) throw new MessageError('item_content: expected an object');
    return parsed;
  }
  if (itemType !== 'storage' && itemType !== 'ipfs') throw new MessageError(`item_type: unsupported "${String(itemType)}"`);
  if (!isObj(message.content)) throw new MessageError('content: expected an object');
  return message.content;
}

function envelope(message: unknown, hash: string, type: string): { content: Fields; sender: string; time: number } {
  if (!isObj(message)) throw new MessageError('expected a message object');
  const top = new Fields(message, '');
  if (top.string('item_hash') !== hash) top.fail('item_hash', 'does not match the requested hash');
  if (top.string('type') !== type) top.fail('type', `expected ${type}, got ${String(message.type)}`);
  const sender = top.string('sender');
  const time = top.number('time', { min: 0, max: Number.MAX_SAFE_INTEGER, fallback: 0 });
  return { content: new Fields(contentOf(message, hash), 'content.'), sender, time };
}

function volumeSpec(c: Fields, raw: unknown, index: number): VolumeSpec {
  if (!isObj(raw)) return c.fail(`volumes[${index}]`, 'expected an object');
  const v = new Fields(raw, `content.volumes[${index}].`);
  const mount = v.mount('mount');
  if (v.has('ref')) return { kind: 'immutable', mount, ...v.refSpec() };
  if (v.bool('ephemeral', false)) return { kind: 'ephemeral', mount, sizeMib: v.sizeMib() };
  if (v.has('persistence')) {
    const persistence = v.string('persistence');
    if (persistence !== 'host' && persistence !== 'store') v.fail('persistence', `unsupported "${persistence}"`);
    const name = v.string('name');
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) v.fail('name', `"${name}" is not a volume name`);
    return { kind: 'persistent', mount, name, persistence: persistence as 'host' | 'store', sizeMib: v.sizeMib() };
  }
  return v.fail('mount', 'a volume needs a ref, ephemeral = true or a persistence');
}

/**
 * The message's volumes: no mount point twice (counting `otherMounts`), no persistent
 * volume name twice (one name is one image on the host: two drives would share it).
 */
function volumesOf(c: Fields, otherMounts: string[]): VolumeSpec[] {
  const volumes = c.array('volumes').map((raw, index) => volumeSpec(c, raw, index));
  const mounts = new Set<string>();
  for (const m of [...volumes.map((v) => v.mount), ...otherMounts]) {
    if (mounts.has(m)) c.fail('volumes', `mount point ${m} used twice`);
    mounts.add(m);
  }
  const names = new Set<string>();
  for (const [index, v] of volumes.entries()) {
    if (v.kind !== 'persistent') continue;
    if (names.has(v.name)) c.fail(`volumes[${index}].name`, `"${v.name}" is used by another persistent volume`);
    names.add(v.name);
  }
  return volumes;
}

function variablesOf(c: Fields): Record<string, string> {
  const variables: Record<string, string> = {};
  const vars = c.optObject('variables');
  if (vars) {
    for (const [name, value] of vars.entries()) {
      if (!ENV_NAME.test(name)) vars.fail(name, 'not a valid variable name');
      if (typeof value !== 'string' || value.includes('\0')) return vars.fail(name, 'expected a string');
      variables[name] = value;
    }
  }
  return variables;
}

/** Validates a PROGRAM message for `hash`; throws MessageError naming the bad field. */
export function parseProgramMessage(message: unknown, hash: string): ProgramSpec {
  const { content: c, sender, time } = envelope(message, hash, 'PROGRAM');
  const type = c.string('type');
  if (type !== 'vm-function') c.fail('type', `expected "vm-function", got "${type}"`);

  const codeFields = c.object('code');
  const entrypoint = codeFields.string('entrypoint');
  if (entrypoint === '' || entrypoint.includes('\0')) codeFields.fail('entrypoint', 'must not be empty');
  // As the reference supervisor decides it: "module:app" is ASGI, anything else an executable.
  const declared = codeFields.string('interface', '');
  if (declared !== '' && declared !== 'asgi' && declared !== 'binary' && declared !== 'executable') codeFields.fail('interface', `unsupported "${declared}"`);
  const iface: ProgramInterface = declared === 'asgi' || (declared === '' && entrypoint.includes(':')) ? 'asgi' : 'binary';
  if (iface === 'binary' && (entrypoint.startsWith('/') || posix.normalize(entrypoint).startsWith('..'))) {
    codeFields.fail('entrypoint', 'must be a path inside the code');
  }
  if (iface === 'asgi' && !ASGI_APP_PATTERN.test(entrypoint)) codeFields.fail('entrypoint', 'must be "module:attribute" for an ASGI program');
  const args = codeFields.array('args').map((a) => (typeof a === 'string' ? a : codeFields.fail('args', 'expected strings')));
  const code: CodeSpec = { ...codeFields.refSpec(), encoding: codeFields.encoding('encoding'), entrypoint, interface: iface, args };

  const r = c.object('runtime');
  const runtime = { ...r.refSpec(), comment: r.string('comment', '') };

  const d = c.optObject('data');
  const data: DataSpec | undefined = d ? { ...d.refSpec(), encoding: d.encoding('encoding'), mount: d.mount('mount') } : undefined;

  const volumes = volumesOf(c, data ? [data.mount] : []);

  const variables = variablesOf(c);

  const res = c.object('resources');
  const resources = {
    vcpus: res.number('vcpus', { min: 1, max: 64, int: true, fallback: 1 }),
    memoryMib: res.number('memory', { min: 1, max: 1 << 20, int: true, fallback: 128 }),
    seconds: res.number('seconds', { min: 0.001, max: 86_400, fallback: 30 }),
  };
  const env = c.optObject('environment');
  const replaces = c.has('replaces') ? c.string('replaces') : undefined;
  return {
    hash, sender, time, code, runtime, data, volumes, variables, resources,
    internet: env?.bool('internet', false) ?? false,
    allowAmend: c.bool('allow_amend', false),
    replaces: replaces !== undefined && HEX64.test(replaces) ? replaces : undefined,
    persistent: c.optObject('on')?.bool('persistent', false) ?? false,
  };
}

export type RootfsPersistence = 'host' | 'store';

/** A port of the VM forwarded from the host (the owner's `port-forwarding` aggregate; 22/tcp always). */
export interface ForwardedPort {
  port: number; // inside the VM
  tcp: boolean;
  udp: boolean;
}

export interface InstanceSpec {
  hash: string;
  sender: string;
  time: number;
  /** The owner: content.address (whose aggregates hold the port forwarding). */
  address: string;
  rootfs: { parent: RefSpec; persistence: RootfsPersistence; sizeMib: number };
  authorizedKeys: string[];
  volumes: VolumeSpec[];
  variables: Record<string, string>;
  resources: { vcpus: number; memoryMib: number };
  internet: boolean;
  allowAmend: boolean;
}

/** Key types OpenSSH accepts in authorized_keys (the blob inside names the same type). */
const SSH_KEY_TYPES = new Set([
  'ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com',
]);

/**
 * One authorized_keys entry as a plain public key: "<type> <base64 blob> [comment]",
 * the blob's first field naming the same type. No options (command=, from=...) and no
 * line breaks: the entry ends up in the VM's authorized_keys file as it is.
 */
export function checkAuthorizedKey(entry: string): string | undefined {
  if (/[\r\n\0]/.test(entry)) return 'contains a line break';
  const [type = '', blob = ''] = entry.trim().split(/\s+/);
  if (!SSH_KEY_TYPES.has(type)) return `"${type.slice(0, 40)}" is not an SSH public key type`;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) return 'the key is not base64';
  const bytes = Buffer.from(blob, 'base64');
  const length = bytes.length >= 4 ? bytes.readUInt32BE(0) : -1;
  if (length !== type.length || bytes.subarray(4, 4 + length).toString('latin1') !== type || bytes.length < 4 + length + 16) {
    return `the key blob is not a ${type} key`;
  }
  return undefined;
}

/** Validates an INSTANCE message for `hash`; throws MessageError naming the bad field. */
export function parseInstanceMessage(message: unknown, hash: string): InstanceSpec {
  const { content: c, sender, time } = envelope(message, hash, 'INSTANCE');
  const address = c.string('address', sender);

  const r = c.object('rootfs');
  const persistence = r.string('persistence', 'host');
  // "store" is not implemented by the reference either: the disk is kept on the host as with "host".
  if (persistence !== 'host' && persistence !== 'store') r.fail('persistence', `unsupported "${persistence}"`);
  if (!r.has('size_mib')) r.fail('size_mib', 'is required (the disk size in MiB)');
  const sizeMib = r.number('size_mib', { min: 1, max: 1 << 22, int: true });
  const rootfs = { parent: r.object('parent').refSpec(), persistence: persistence as RootfsPersistence, sizeMib };

  const authorizedKeys = c.array('authorized_keys').map((entry, index) => {
    if (typeof entry !== 'string') return c.fail(`authorized_keys[${index}]`, 'expected a string');
    const problem = checkAuthorizedKey(entry);
    if (problem) c.fail(`authorized_keys[${index}]`, `not an SSH public key: ${problem}`);
    return entry.trim();
  });

  const volumes = volumesOf(c, []);

  const env = c.optObject('environment');
  if (env?.has('trusted_execution')) env.fail('trusted_execution', 'confidential instances are not supported on this node');
  const res = c.object('resources');
  return {
    hash, sender, time, address, rootfs, authorizedKeys, volumes,
    variables: variablesOf(c),
    resources: {
      vcpus: res.number('vcpus', { min: 1, max: 64, int: true, fallback: 1 }),
      memoryMib: res.number('memory', { min: 1, max: 1 << 20, int: true, fallback: 2048 }),
    },
    internet: env?.bool('internet', false) ?? false,
    allowAmend: c.bool('allow_amend', false),
  };
}

/**
 * The owner's `port-forwarding` aggregate for one VM, in the reference's format:
 * `{ "<vm hash>": { "ports": { "<port>": { "tcp": bool, "udp": bool } } } }`.
 * Port 22/tcp is always forwarded. Throws MessageError naming the bad entry.
 */
export function parsePortForwarding(aggregate: unknown, hash: string): ForwardedPort[] {
  const ports = new Map<number, ForwardedPort>([[22, { port: 22, tcp: true, udp: false }]]);
  if (aggregate === undefined || aggregate === null) return [...ports.values()];
  if (!isObj(aggregate)) throw new MessageError('port-forwarding: expected an object');
  const mine = aggregate[hash];
  if (mine === undefined || mine === null) return [...ports.values()];
  if (!isObj(mine)) throw new MessageError(`port-forwarding.${hash}: expected an object`);
  const vm = new Fields(mine, `port-forwarding.${hash}.`);
  const requested = vm.optObject('ports');
  for (const [key, value] of requested?.entries() ?? []) {
    const where = `port-forwarding.${hash}.ports.${key.slice(0, 20)}`;
    if (!/^[0-9]{1,5}$/.test(key) || Number(key) < 1 || Number(key) > 65535) throw new MessageError(`${where}: not a port in 1..65535`);
    if (!isObj(value)) throw new MessageError(`${where}: expected { tcp, udp }`);
    const entry = new Fields(value, `${where}.`);
    const forward = { port: Number(key), tcp: entry.bool('tcp', false), udp: entry.bool('udp', false) };
    if (forward.port === 22) forward.tcp = true;
    if (forward.tcp || forward.udp) ports.set(forward.port, forward);
  }
  return [...ports.values()].sort((a, b) => a.port - b.port);
}

/** Validates a STORE message for `hash`. */
export function parseStoreMessage(message: unknown, hash: string): StoreSpec {
  const { content: c, sender, time } = envelope(message, hash, 'STORE');
  const itemType = c.string('item_type');
  if (itemType !== 'storage' && itemType !== 'ipfs') c.fail('item_type', `unsupported "${itemType}"`);
  const itemHash = c.string('item_hash');
  if (itemType === 'storage' && !HEX64.test(itemHash)) c.fail('item_hash', 'expected a 64-hex sha256');
  if (itemType === 'ipfs' && !CID.test(itemHash)) c.fail('item_hash', 'expected an IPFS CID');
  const ref = c.has('ref') ? c.string('ref') : undefined;
  const size = c.has('size') ? c.number('size', { min: 0, max: Number.MAX_SAFE_INTEGER, int: true }) : undefined;
  return { hash, sender, time, itemType: itemType as StoreSpec['itemType'], itemHash, ref: ref !== undefined && HEX64.test(ref) ? ref : undefined, size };
}

/** Hashes a message on the stream touches: its own, what it amends, what it forgets. */
export function touchedHashes(message: unknown): { type: string; hash: string; touches: string[] } | undefined {
  if (!isObj(message) || typeof message.item_hash !== 'string' || typeof message.type !== 'string') return undefined;
  let content: unknown = message.content;
  if (!isObj(content) && typeof message.item_content === 'string') {
    try { content = JSON.parse(message.item_content); } catch { content = undefined; }
  }
  const touches: string[] = [];
  if (isObj(content)) {
    if (typeof content.ref === 'string' && HEX64.test(content.ref)) touches.push(content.ref);
    if (typeof content.replaces === 'string' && HEX64.test(content.replaces)) touches.push(content.replaces);
    if (message.type === 'FORGET' && Array.isArray(content.hashes)) {
      for (const h of content.hashes) if (typeof h === 'string' && HEX64.test(h)) touches.push(h);
    }
  }
  return { type: message.type, hash: message.item_hash, touches };
}
