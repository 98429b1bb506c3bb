// programs.source = "aleph": a program hash is the item hash of a PROGRAM message.
// resolve(hash):
//   1. the PROGRAM message: from the on-disk message cache (messages are immutable),
//      else GET messages.json?hashes=<hash>; validated (message.ts). Unknown or
//      malformed -> NotFoundError (404) with the reason.
//   2. each ref (code, data, immutable volumes; the runtime for VM drivers) names a
//      STORE message (cached like the program's); `use_latest` follows its newest
//      amend by the same sender, asked of the API at every boot.
//   3. the blobs those STORE messages name: downloaded into the artifact cache
//      (download.ts, cache.ts), unpacked where the driver needs a folder (unpack.ts).
//   4. mapped to a Launch for the configured driver (launch.ts).
// An INSTANCE message instead names a parent disk image (rootfs.parent, a STORE):
// downloaded like the rest, checked to be a disk image no larger than rootfs.size_mib,
// and mapped to a MachineLaunch with the owner's port forwarding (its
// `port-forwarding` aggregate, read at every boot) for the qemu driver.
// exists(hash) is step 1 only (the TLS on-demand policy): answers are remembered,
// negative ones too, and concurrent questions for one hash share one API query.
// Fetch failures are BootFailedError (502) with the reason, after the downloader's retries.

import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import path from 'node:path';
import { BootFailedError, NotFoundError, createLogger, shortHash } from '../../common/index.js';
import type { AlephProgramsSettings } from '../../config/index.js';
import type { MetricsRegistry } from '../../metrics/index.js';
import type { AlephVmVolume, MachineLaunch, Program, ProgramSource } from '../types.js';
import { ArtifactCache } from './cache.js';
import { AlephClient, FetchError } from './client.js';
import { Downloader, type Artifact } from './download.js';
import { DiskImageError, inspectDiskImage, type DiskImage } from './disk-image.js';
import { findSandbox, hostnameOf, LaunchRefused, processLaunch, toProgram, vmLaunch, type ProgramFiles, type Sandbox } from './launch.js';
import { MessageError, parseInstanceMessage, parsePortForwarding, parseProgramMessage, parseStoreMessage, touchedHashes, type CodeEncoding, type ForwardedPort, type InstanceSpec, type ProgramSpec, type RefSpec, type StoreSpec } from './message.js';
import { isSquashfsFile, squashfsImage, unpack } from './unpack.js';

const log = createLogger('programs.aleph');
/** How much larger than its archive cap an unpacked archive may be. */
const UNPACK_FACTOR = 16;
/** exists() answers: a PROGRAM message is immutable (a FORGET drops it); "no such message" may change when one is posted. */
const EXISTS_TTL_MS = 10 * 60_000;
const MISSING_TTL_MS = 60_000;
/** The API could not be asked: refused for a short while, so a flood does not become one query per handshake. */
const UNREACHABLE_TTL_MS = 5_000;

export interface AlephSourceOptions {
  api: string;
  settings: AlephProgramsSettings;
  /** orchestrator.driver: "process" gets a sandboxed ProcessLaunch, others a VmLaunch. */
  driver: string;
  metrics?: MetricsRegistry;
  /** First retry delay of downloads and API calls (tests). Default 250 ms. */
  retryBaseMs?: number;
}

interface Resolved {
  program: Program;
  /** Hashes whose amend or forget makes this program stale. */
  watch: Set<string>;
}

export class AlephProgramSource implements ProgramSource {
  readonly client: AlephClient;
  readonly cache: ArtifactCache;
  private readonly downloader: Downloader;
  private readonly messagesDir: string;
  private readonly settings: AlephProgramsSettings;
  private readonly driver: string;
  private sandbox: Sandbox | undefined;
  private readonly inflight = new Map<string, Promise<Program>>();
  private readonly resolved = new Map<string, Resolved>();
  /** Newest amend seen per use_latest ref: used when the API cannot be asked. */
  private readonly latest = new Map<string, string>();
  private readonly existence = new LRUCache<string, boolean>({ max: 20_000, ttl: MISSING_TTL_MS });
  private readonly checking = new Map<string, Promise<boolean>>();

  private constructor(options: AlephSourceOptions) {
    this.settings = options.settings;
    this.driver = options.driver;
    this.client = new AlephClient({ api: options.api, timeoutMs: Math.min(options.settings.downloadTimeoutMs, 15_000) });
    this.cache = new ArtifactCache(options.settings.cacheDir, options.settings.cacheMaxBytes);
    this.messagesDir = path.join(options.settings.cacheDir, 'messages');
    this.downloader = new Downloader({
      cache: this.cache,
      storageUrl: (item) => this.client.rawUrl(item),
      ipfsGateway: options.settings.ipfsGateway,
      timeoutMs: options.settings.downloadTimeoutMs,
      retries: options.settings.downloadRetries,
      retryBaseMs: options.retryBaseMs,
      metrics: options.metrics,
    });
  }

  static async create(options: AlephSourceOptions): Promise<AlephProgramSource> {
    const source = new AlephProgramSource(options);
    await source.cache.init();
    await mkdir(source.messagesDir, { recursive: true });
    if (source.driver === 'process') {
      source.sandbox = await findSandbox();
      if (options.settings.allowProcessForNetwork && !source.sandbox) {
        log.warn('allow_process_for_network is set but bubblewrap (bwrap) or socat is not installed: programs will be refused');
      }
    }
    return source;
  }

  resolve(hash: string): Promise<Program> {
    let pending = this.inflight.get(hash);
    if (!pending) {
      pending = this.load(hash).finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, pending);
    }
    return pending;
  }

  known(): Program[] {
    return [...this.resolved.values()].map((r) => r.program);
  }

  async eraseVolumes(hash: string): Promise<void> {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new NotFoundError('not a program hash');
    // The next resolve makes the folders again (a cached program would point at removed ones).
    this.resolved.delete(hash);
    await rm(path.join(this.settings.volumesDir, hash), { recursive: true, force: true });
    log.info('persistent volumes erased', { hash: shortHash(hash) });
  }

  exists(hash: string): Promise<boolean> {
    if (this.resolved.has(hash)) return Promise.resolve(true);
    const cached = this.existence.get(hash);
    if (cached !== undefined) return Promise.resolve(cached);
    let pending = this.checking.get(hash);
    if (!pending) {
      pending = this.check(hash).finally(() => this.checking.delete(hash));
      this.checking.set(hash, pending);
    }
    return pending;
  }

  private async check(hash: string): Promise<boolean> {
    try {
      await this.programSpec(hash);
      this.existence.set(hash, true, { ttl: EXISTS_TTL_MS });
      return true;
    } catch (error) {
      const missing = error instanceof NotFoundError;
      if (!missing) log.warn('cannot tell whether a program exists; refusing for now', { hash: shortHash(hash), error: (error as Error).message });
      this.existence.set(hash, false, { ttl: missing ? MISSING_TTL_MS : UNREACHABLE_TTL_MS });
      return false;
    }
  }

  /** A message already in the node's message cache (for the guest API), or undefined. */
  async cachedMessage(hash: string): Promise<unknown | undefined> {
    if (!/^[0-9a-f]{64}$/.test(hash)) return undefined;
    try {
      return JSON.parse(await readFile(this.messageFile(hash), 'utf8'));
    } catch {
      return undefined;
    }
  }

  /** The path of a blob already in the artifact cache (for the guest API), or undefined. */
  cachedBlob(itemHash: string): string | undefined {
    if (!ArtifactCache.isKey(itemHash)) return undefined;
    const folder = this.cache.lookup(itemHash);
    return folder ? path.join(folder, 'blob') : undefined;
  }

  /**
   * A message from the API's stream: the programs (resolved on this node) it makes
   * stale, to be drained. A FORGET also drops the forgotten messages from the cache.
   */
  async affected(message: unknown): Promise<string[]> {
    const info = touchedHashes(message);
    if (!info || info.touches.length === 0) return [];
    if (info.type === 'FORGET') {
      for (const hash of info.touches) {
        this.existence.delete(hash);
        await rm(this.messageFile(hash), { force: true });
      }
    }
    const stale: string[] = [];
    for (const [hash, entry] of this.resolved) {
      if (info.touches.some((t) => entry.watch.has(t))) stale.push(hash);
    }
    if (info.type === 'FORGET') for (const hash of stale) if (info.touches.includes(hash)) this.resolved.delete(hash);
    return stale;
  }

  private async load(hash: string): Promise<Program> {
    const spec = await this.programSpec(hash);
    if ('rootfs' in spec) return this.loadMachine(spec);
    if (this.driver === 'process') {
      if (!this.settings.allowProcessForNetwork) {
        throw new BootFailedError('programs from the Aleph network run in a VM driver; the process driver needs programs.allow_process_for_network = true and bubblewrap');
      }
      if (!this.sandbox) throw new BootFailedError('refusing to run downloaded code without a sandbox: bubblewrap (bwrap) or socat is not installed');
    }
    const watch = new Set<string>([hash]);
    const pinned: string[] = [];
    try {
      const fetchRef = (kind: Artifact['kind'], ref: RefSpec, maxBytes: number) => this.fetchRef({ kind, ref, maxBytes, owner: spec.sender, watch, pinned });
      const asFolder = async (key: string, encoding: CodeEncoding, maxBytes: number, fileName?: string): Promise<string> => {
        try {
          return await unpack(this.cache, { key, encoding, fileName, maxBytes: maxBytes * UNPACK_FACTOR });
        } catch (error) {
          throw this.fetchFailure('could not unpack', error);
        }
      };
      const processDriver = this.driver === 'process';
      const s = this.settings;
      // VM drivers attach images: a squashfs blob as it is (checked), a folder as a squashfs built once.
      const squashfsBlob = async (folder: string, field: string, what: string): Promise<string> => {
        const blob = path.join(folder, 'blob');
        if (!(await isSquashfsFile(blob))) throw new BootFailedError(`${field}: the ${what} is not a squashfs image`);
        return blob;
      };
      const asImage = async (key: string, folder: string, what: string): Promise<string> => {
        try {
          return await squashfsImage(this.cache, key, folder, what);
        } catch (error) {
          throw this.fetchFailure(`could not make the ${what} image`, error);
        }
      };

      const code = await fetchRef('code', spec.code, s.maxCodeBytes);
      let codePath: string;
      if (spec.code.encoding === 'squashfs' && !processDriver) codePath = await squashfsBlob(code.folder, 'content.code', `code ${shortHash(code.store.itemHash)} (encoding "squashfs")`);
      else {
        const fileName = spec.code.encoding !== 'plain' ? undefined : spec.code.interface === 'asgi' ? `${spec.code.entrypoint.split(':')[0]}.py` : spec.code.entrypoint;
        codePath = await asFolder(code.store.itemHash, spec.code.encoding, s.maxCodeBytes, fileName);
        if (!processDriver) codePath = await asImage(code.store.itemHash, codePath, 'code');
      }

      const volumes: AlephVmVolume[] = [];
      if (spec.data) {
        const data = await fetchRef('data', spec.data, s.maxDataBytes);
        let source: string;
        if (spec.data.encoding === 'squashfs' && !processDriver) source = await squashfsBlob(data.folder, 'content.data', `data ${shortHash(data.store.itemHash)} (encoding "squashfs")`);
        else {
          source = await asFolder(data.store.itemHash, spec.data.encoding, s.maxDataBytes, 'data');
          if (!processDriver) source = await asImage(data.store.itemHash, source, 'data');
        }
        volumes.push({ mount: spec.data.mount, kind: 'data', source, sizeMib: 0, readOnly: true });
      }
      for (const [index, volume] of spec.volumes.entries()) {
        if (volume.kind === 'immutable') {
          const fetched = await fetchRef('volume', volume, s.maxVolumeBytes);
          const source = processDriver
            ? await asFolder(fetched.store.itemHash, 'squashfs', s.maxVolumeBytes)
            : await squashfsBlob(fetched.folder, `content.volumes[${index}]`, `immutable volume ${shortHash(fetched.store.itemHash)}`);
          volumes.push({ mount: volume.mount, kind: 'immutable', source, sizeMib: 0, readOnly: true });
        } else if (volume.kind === 'ephemeral') {
          volumes.push({ mount: volume.mount, kind: 'ephemeral', source: '', sizeMib: volume.sizeMib, readOnly: false });
        } else if (processDriver) {
          // persistence "store" is not implemented by the reference either: kept on the host like "host".
          const folder = path.join(s.volumesDir, hash, volume.name);
          await mkdir(folder, { recursive: true });
          volumes.push({ mount: volume.mount, kind: 'persistent', source: folder, sizeMib: volume.sizeMib, readOnly: false });
        } else {
          // An ext4 image the VM driver makes at first use (src/drivers/vm/disks.ts); its size is the limit.
          volumes.push({ mount: volume.mount, kind: 'persistent', source: path.join(s.volumesDir, hash, `${volume.name}.img`), sizeMib: volume.sizeMib, readOnly: false });
        }
      }
      let runtime = '';
      if (!processDriver) {
        const fetched = await fetchRef('runtime', spec.runtime, s.maxRuntimeBytes);
        runtime = await squashfsBlob(fetched.folder, 'content.runtime', `runtime ${shortHash(fetched.store.itemHash)}`);
      }

      const files: ProgramFiles = { code: codePath, runtime, volumes };
      let launch: Program['launch'];
      try {
        launch = processDriver ? processLaunch(spec, files, this.sandbox!) : vmLaunch(spec, files);
      } catch (error) {
        if (error instanceof LaunchRefused) throw new BootFailedError(error.message);
        throw error;
      }
      const program = toProgram(spec, launch, spec.code.ref);
      this.resolved.set(hash, { program, watch });
      log.info('program resolved', { hash: shortHash(hash), code: shortHash(code.store.itemHash), driver: this.driver });
      return program;
    } finally {
      for (const key of pinned) this.cache.unpin(key);
    }
  }

  /**
   * A STORE ref's blob in the artifact cache: the STORE message (its newest amend with
   * use_latest) and the download. Both hashes join `watch`; the blob is pinned (and
   * listed in `pinned`) before the download, so nothing a boot needs is evicted to
   * make room for the rest of it.
   */
  private async fetchRef(o: { kind: Artifact['kind']; ref: RefSpec; maxBytes: number; owner: string; watch: Set<string>; pinned: string[] }): Promise<{ store: StoreSpec; folder: string }> {
    const store = await this.storeFor(o.ref, o.kind, o.owner);
    o.watch.add(o.ref.ref).add(store.hash);
    this.cache.pin(store.itemHash);
    o.pinned.push(store.itemHash);
    try {
      return { store, folder: await this.downloader.fetch({ kind: o.kind, itemType: store.itemType, itemHash: store.itemHash, maxBytes: o.maxBytes }) };
    } catch (error) {
      throw this.fetchFailure(`could not download the ${o.kind} (${shortHash(store.itemHash)})`, error);
    }
  }

  /** An INSTANCE: its parent image fetched and checked, its volumes resolved, mapped to a MachineLaunch. */
  private async loadMachine(spec: InstanceSpec): Promise<Program> {
    if (this.driver !== 'qemu' && this.driver !== 'firecracker') throw new BootFailedError(`instances run under the qemu or firecracker driver; this node's driver is "${this.driver}"`);
    const s = this.settings;
    const watch = new Set<string>([spec.hash]);
    const pinned: string[] = [];
    try {
      const { store, folder } = await this.fetchRef({ kind: 'rootfs', ref: spec.rootfs.parent, maxBytes: s.maxRootfsBytes, owner: spec.sender, watch, pinned });
      const parent = path.join(folder, 'blob');
      let image: DiskImage;
      try {
        image = await inspectDiskImage(parent);
      } catch (error) {
        if (error instanceof DiskImageError) throw new BootFailedError(`content.rootfs.parent (${shortHash(store.itemHash)}): ${error.message}`);
        throw this.fetchFailure('could not inspect the rootfs', error);
      }
      const parentMib = Math.ceil(image.virtualSize / 1024 ** 2);
      if (spec.rootfs.sizeMib < parentMib) {
        throw new BootFailedError(`content.rootfs.size_mib: ${spec.rootfs.sizeMib} MiB is smaller than the parent image (${parentMib} MiB)`);
      }
      const stateDir = path.join(s.volumesDir, spec.hash);
      // The guest sees the blobs as they are (raw disks): what is on them is the owner's business, as in the reference.
      const volumes: AlephVmVolume[] = [];
      for (const volume of spec.volumes) {
        if (volume.kind === 'immutable') {
          const fetched = await this.fetchRef({ kind: 'volume', ref: volume, maxBytes: s.maxVolumeBytes, owner: spec.sender, watch, pinned });
          volumes.push({ mount: volume.mount, kind: 'immutable', source: path.join(fetched.folder, 'blob'), sizeMib: 0, readOnly: true });
        } else if (volume.kind === 'ephemeral') {
          volumes.push({ mount: volume.mount, kind: 'ephemeral', source: '', sizeMib: volume.sizeMib, readOnly: false });
        } else {
          // Next to the root disk, so erase removes it with it ("store" is kept on the host too, as with programs).
          volumes.push({ mount: volume.mount, kind: 'persistent', source: path.join(stateDir, `${volume.name}.img`), sizeMib: volume.sizeMib, readOnly: false });
        }
      }
      const launch: MachineLaunch = {
        kind: 'machine',
        parent,
        parentFormat: image.format,
        disk: path.join(stateDir, 'rootfs.qcow2'),
        sizeMib: spec.rootfs.sizeMib,
        stateDir,
        hostname: hostnameOf(spec.hash),
        authorizedKeys: [...spec.authorizedKeys],
        ports: await this.forwardedPorts(spec),
        internet: spec.internet,
        volumes,
      };
      const program: Program = {
        hash: spec.hash, name: '', memoryMib: spec.resources.memoryMib, vcpus: spec.resources.vcpus,
        healthPath: '', requestTimeoutMs: 0, launch, sender: spec.sender, persistent: true,
      };
      this.resolved.set(spec.hash, { program, watch });
      log.info('instance resolved', { hash: shortHash(spec.hash), parent: shortHash(store.itemHash), format: image.format, size_mib: spec.rootfs.sizeMib });
      return program;
    } finally {
      for (const key of pinned) this.cache.unpin(key);
    }
  }

  /** The owner's port forwarding for this VM; 22/tcp alone when the API cannot be asked (as the reference). */
  private async forwardedPorts(spec: InstanceSpec): Promise<ForwardedPort[]> {
    let aggregate: unknown;
    try {
      aggregate = await this.client.aggregate(spec.address, 'port-forwarding');
    } catch (error) {
      log.warn('could not read the port-forwarding aggregate; forwarding 22 only', { hash: shortHash(spec.hash), error: (error as Error).message });
      aggregate = undefined;
    }
    try {
      return parsePortForwarding(aggregate, spec.hash);
    } catch (error) {
      if (error instanceof MessageError) throw new BootFailedError(`the owner's ${error.message}`);
      throw error;
    }
  }

  private fetchFailure(what: string, error: unknown): Error {
    if (error instanceof NotFoundError || error instanceof BootFailedError) return error;
    const reason = error instanceof FetchError || error instanceof Error ? error.message : String(error);
    return new BootFailedError(`${what}: ${reason}`, { cause: error });
  }

  private async programSpec(hash: string): Promise<ProgramSpec | InstanceSpec> {
    const raw = await this.message(hash, 'program message');
    try {
      return (raw as { type?: unknown } | null)?.type === 'INSTANCE' ? parseInstanceMessage(raw, hash) : parseProgramMessage(raw, hash);
    } catch (error) {
      if (error instanceof MessageError) {
        await rm(this.messageFile(hash), { force: true });
        throw new NotFoundError(`malformed program message ${shortHash(hash)}: ${error.message}`);
      }
      throw error;
    }
  }

  /** The STORE message a ref resolves to (its newest amend with use_latest). */
  private async storeFor(ref: RefSpec, kind: string, owner: string): Promise<StoreSpec> {
    const original = await this.store(ref.ref, kind);
    if (!ref.useLatest) return original;
    let newest: unknown;
    try {
      newest = await this.client.latestAmend(ref.ref, original.sender || owner);
    } catch (error) {
      const known = this.latest.get(ref.ref);
      if (known) {
        log.warn('Aleph API unreachable, using the last known amend', { ref: shortHash(ref.ref), amend: shortHash(known) });
        return this.store(known, kind);
      }
      throw this.fetchFailure(`could not look up the latest ${kind}`, error);
    }
    if (newest === undefined) return original;
    const hash = String((newest as { item_hash?: unknown }).item_hash);
    let amend: StoreSpec;
    try {
      amend = parseStoreMessage(newest, hash);
    } catch (error) {
      throw new NotFoundError(`malformed amend of the ${kind} ${shortHash(ref.ref)}: ${(error as Error).message}`);
    }
    if (amend.ref !== ref.ref) return original;
    await this.saveMessage(hash, newest);
    this.latest.set(ref.ref, hash);
    return amend.time >= original.time ? amend : original;
  }

  private async store(hash: string, kind: string): Promise<StoreSpec> {
    const raw = await this.message(hash, `${kind} STORE message`);
    try {
      return parseStoreMessage(raw, hash);
    } catch (error) {
      if (error instanceof MessageError) {
        await rm(this.messageFile(hash), { force: true });
        throw new NotFoundError(`malformed ${kind} STORE message ${shortHash(hash)}: ${error.message}`);
      }
      throw error;
    }
  }

  /** A message by hash: the disk cache, else the API (then cached). */
  private async message(hash: string, what: string): Promise<unknown> {
    try {
      return JSON.parse(await readFile(this.messageFile(hash), 'utf8'));
    } catch {
      // not cached (or unreadable): ask the API
    }
    let raw: unknown;
    try {
      raw = await this.client.message(hash);
    } catch (error) {
      throw this.fetchFailure(`could not fetch the ${what}`, error);
    }
    if (raw === undefined) throw new NotFoundError(`no ${what} ${shortHash(hash)} on the Aleph network`);
    await this.saveMessage(hash, raw);
    return raw;
  }

  private async saveMessage(hash: string, raw: unknown): Promise<void> {
    const file = this.messageFile(hash);
    const temp = `${file}.${process.pid}.tmp`;
    await writeFile(temp, JSON.stringify(raw));
    await rename(temp, file);
  }

  private messageFile(hash: string): string {
    return path.join(this.messagesDir, `${hash}.json`);
  }
}
