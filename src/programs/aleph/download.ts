// Downloads of stored blobs into the artifact cache: streamed to a temp file with a
// size cap (the disk never holds more than the cap), sha256-checked when the storage
// engine names blobs by their sha256 (item_type "storage"), renamed into place,
// one download per blob at a time, retried with backoff on transient errors.

import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { fetch, type Response } from 'undici';
import { createLogger, shortHash } from '../../common/index.js';
import type { Counter, MetricsRegistry } from '../../metrics/index.js';
import { ArtifactCache } from './cache.js';
import { describeFetchFailure, FetchError, isTransientStatus } from './client.js';

const log = createLogger('programs.download');

export interface Artifact {
  kind: 'code' | 'runtime' | 'data' | 'volume' | 'rootfs';
  itemType: 'storage' | 'ipfs';
  itemHash: string;
  maxBytes: number;
}

export interface DownloaderOptions {
  cache: ArtifactCache;
  /** URL of a blob of item_type "storage". */
  storageUrl: (itemHash: string) => string;
  ipfsGateway: string;
  timeoutMs: number;
  retries: number;
  /** First retry delay; doubles per attempt. Default 250 ms. */
  retryBaseMs?: number;
  metrics?: MetricsRegistry;
}

export class Downloader {
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly counter: Counter | undefined;

  constructor(private readonly options: DownloaderOptions) {
    this.counter = options.metrics?.counter('aleph_edge_artifact_downloads_total', 'Artifact downloads from the Aleph network, by result');
  }

  /** The cache folder of the artifact, downloading it first when needed (single flight per blob). */
  fetch(artifact: Artifact): Promise<string> {
    if (!ArtifactCache.isKey(artifact.itemHash)) {
      return Promise.reject(new FetchError(`invalid item hash for ${artifact.kind}`, false));
    }
    const cached = this.options.cache.lookup(artifact.itemHash);
    if (cached) return Promise.resolve(cached);
    let pending = this.inflight.get(artifact.itemHash);
    if (!pending) {
      pending = this.download(artifact).finally(() => this.inflight.delete(artifact.itemHash));
      this.inflight.set(artifact.itemHash, pending);
    }
    return pending;
  }

  private async download(artifact: Artifact): Promise<string> {
    const base = this.options.retryBaseMs ?? 250;
    for (let attempt = 0; ; attempt++) {
      try {
        const folder = await this.attempt(artifact);
        this.counter?.inc({ result: 'ok' });
        return folder;
      } catch (error) {
        const failure = error instanceof FetchError ? error : new FetchError(describeFetchFailure(error), true, { cause: error });
        if (!failure.transient || attempt >= this.options.retries) {
          this.counter?.inc({ result: 'failed' });
          log.warn('artifact download failed', { kind: artifact.kind, item: shortHash(artifact.itemHash), reason: failure.message, attempts: attempt + 1 });
          throw failure;
        }
        const delay = base * 2 ** attempt;
        log.info('artifact download failed, retrying', { kind: artifact.kind, item: shortHash(artifact.itemHash), reason: failure.message, retry_in_ms: delay });
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  private url(artifact: Artifact): string {
    if (artifact.itemType === 'ipfs') return `${this.options.ipfsGateway.replace(/\/+$/, '')}/ipfs/${artifact.itemHash}`;
    return this.options.storageUrl(artifact.itemHash);
  }

  private async attempt(artifact: Artifact): Promise<string> {
    const { cache } = this.options;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new FetchError(`download timed out after ${this.options.timeoutMs} ms`, true)), this.options.timeoutMs);
    const temp = cache.tempPath(artifact.itemHash);
    let keep = false;
    try {
      let response: Response;
      try {
        response = await fetch(this.url(artifact), { signal: abort.signal });
      } catch (error) {
        throw abort.signal.aborted ? abort.signal.reason : new FetchError(`storage unreachable (${describeFetchFailure(error)})`, true);
      }
      if (!response.ok) {
        await response.body?.cancel();
        throw new FetchError(`storage answered HTTP ${response.status}`, isTransientStatus(response.status));
      }
      const tooLarge = () => new FetchError(`${artifact.kind} archive is larger than the ${artifact.maxBytes}-byte limit`, false);
      const declared = Number(response.headers.get('content-length') ?? NaN);
      if (Number.isFinite(declared) && declared > artifact.maxBytes) {
        await response.body?.cancel();
        throw tooLarge();
      }
      if (!response.body) throw new FetchError('storage sent no body', true);
      const digest = createHash('sha256');
      const file = await open(temp, 'wx', 0o644);
      let size = 0;
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          size += chunk.byteLength;
          if (size > artifact.maxBytes) {
            abort.abort(tooLarge());
            throw tooLarge();
          }
          digest.update(chunk);
          await file.write(chunk);
        }
        await file.sync();
      } catch (error) {
        if (error instanceof FetchError) throw error;
        throw abort.signal.aborted ? abort.signal.reason : new FetchError(`download interrupted (${describeFetchFailure(error)})`, true);
      } finally {
        await file.close();
      }
      if (artifact.itemType === 'storage') {
        const actual = digest.digest('hex');
        if (actual !== artifact.itemHash) {
          throw new FetchError(`${artifact.kind} blob does not match its hash (got sha256 ${shortHash(actual)})`, false);
        }
      }
      await cache.reserve(size);
      const folder = await cache.commit(artifact.itemHash, temp, size, artifact.kind);
      keep = true;
      log.info('artifact downloaded', { kind: artifact.kind, item: shortHash(artifact.itemHash), bytes: size });
      return folder;
    } finally {
      clearTimeout(timer);
      if (!keep) await rm(temp, { force: true });
    }
  }
}
