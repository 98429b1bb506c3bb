// The kept set: programs the node runs without waiting for a request (scheduler
// allocations, paid instances, operator pins). Each is started now, restarted with the
// orchestrator's backoff when it dies, and remembered in a JSON file so a restarted
// node starts them again. The orchestrator owns executions; this owns only intent.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { createLogger, isProgramHash, shortHash } from '../common/index.js';

export type KeepReason = 'allocation' | 'notify' | 'operator';
const REASONS: readonly KeepReason[] = ['allocation', 'notify', 'operator'];

export interface KeptProgram {
  hash: string;
  reason: KeepReason;
}

export interface KeeperDeps {
  /** Where the set is persisted; undefined = in memory only. */
  file: string | undefined;
  /** Boots the program's execution (if not running) and resolves once it is ready. */
  start(hash: string): Promise<void>;
  /** Stops the program's execution; resolves once stopped. */
  stop(hash: string): Promise<void>;
  /** How long until the orchestrator's backoff allows another boot (undefined = now). */
  retryInMs(hash: string): number | undefined;
}

/** When a start fails for a reason the backoff does not count (unknown program, no capacity). */
const UNCOUNTED_RETRY_MS = 10_000;

const log = createLogger('orchestrator');

export class Keeper {
  private readonly entries = new Map<string, KeepReason>();
  /** Pending restarts, one per hash at most. */
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Starts in progress, so a death reported mid-start does not start twice. */
  private readonly starting = new Set<string>();
  private saving: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly deps: KeeperDeps) {}

  has(hash: string): boolean {
    return this.entries.has(hash);
  }

  list(): KeptProgram[] {
    return [...this.entries].map(([hash, reason]) => ({ hash, reason }));
  }

  /** Records the program as kept (persisted before this resolves) and starts it in the background. */
  async keep(hash: string, reason: KeepReason): Promise<void> {
    if (!isProgramHash(hash)) throw new TypeError(`not a program hash: ${hash}`);
    const before = this.entries.get(hash);
    this.entries.set(hash, reason);
    if (before !== reason) await this.save();
    this.ensure(hash);
  }

  /** Forgets the program (persisted) and stops its execution. */
  async unkeep(hash: string): Promise<void> {
    const had = this.entries.delete(hash);
    this.clearTimer(hash);
    if (had) await this.save();
    await this.deps.stop(hash);
  }

  /** The kept program's execution ended without being asked to: start it again after the backoff. */
  lost(hash: string): void {
    if (!this.entries.has(hash) || this.closed || this.starting.has(hash) || this.timers.has(hash)) return;
    const delay = this.deps.retryInMs(hash) ?? 0;
    log.info('kept program down, restarting it', { hash: shortHash(hash), in_ms: delay });
    this.schedule(hash, delay);
  }

  /** Reads the persisted set and starts every program in it. A damaged file is logged and ignored. */
  async restore(): Promise<void> {
    if (!this.deps.file) return;
    let raw: string;
    try {
      raw = await readFile(this.deps.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('cannot read the kept programs file', { file: this.deps.file, error: (error as Error).message });
      return;
    }
    const entries = parseKeptFile(raw);
    if (!entries) {
      log.warn('ignoring a damaged kept programs file', { file: this.deps.file });
      return;
    }
    for (const { hash, reason } of entries) if (!this.entries.has(hash)) this.entries.set(hash, reason);
    if (entries.length > 0) log.info('starting kept programs', { count: entries.length });
    for (const { hash } of entries) this.ensure(hash);
  }

  /** Stops restarting (drain). The persisted set stays for the next boot. */
  close(): void {
    this.closed = true;
    for (const hash of [...this.timers.keys()]) this.clearTimer(hash);
  }

  private ensure(hash: string): void {
    if (this.closed || this.starting.has(hash) || this.timers.has(hash)) return;
    this.starting.add(hash);
    void this.deps.start(hash).then(
      () => this.starting.delete(hash),
      (error: unknown) => {
        this.starting.delete(hash);
        if (!this.entries.has(hash) || this.closed) return;
        const delay = this.deps.retryInMs(hash) ?? UNCOUNTED_RETRY_MS;
        log.warn('kept program did not start; retrying', { hash: shortHash(hash), error: (error as Error).message, retry_in_ms: delay });
        this.schedule(hash, delay);
      },
    );
  }

  private schedule(hash: string, delayMs: number): void {
    this.clearTimer(hash);
    const timer = setTimeout(() => {
      this.timers.delete(hash);
      if (this.entries.has(hash)) this.ensure(hash);
    }, delayMs);
    timer.unref();
    this.timers.set(hash, timer);
  }

  private clearTimer(hash: string): void {
    const timer = this.timers.get(hash);
    if (timer) clearTimeout(timer);
    this.timers.delete(hash);
  }

  /** Writes are queued so the file always ends with the latest set. */
  private save(): Promise<void> {
    const file = this.deps.file;
    if (!file) return Promise.resolve();
    const run = this.saving.catch(() => {}).then(() => writeAtomically(file, `${JSON.stringify({ version: 1, kept: this.list() }, null, 2)}\n`));
    this.saving = run;
    return run;
  }
}

/** The file's entries, or undefined when it is not one this node wrote. */
export function parseKeptFile(raw: string): KeptProgram[] | undefined {
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof data !== 'object' || data === null || (data as { version?: unknown }).version !== 1) return undefined;
  const kept = (data as { kept?: unknown }).kept;
  if (!Array.isArray(kept)) return undefined;
  const out: KeptProgram[] = [];
  for (const entry of kept) {
    const { hash, reason } = (entry ?? {}) as { hash?: unknown; reason?: unknown };
    if (typeof hash !== 'string' || !isProgramHash(hash) || !REASONS.includes(reason as KeepReason)) return undefined;
    out.push({ hash, reason: reason as KeepReason });
  }
  return out;
}

/** tmp (O_EXCL) + fsync + rename + fsync of the folder: a reader sees the old set or the new one. */
async function writeAtomically(file: string, data: string): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
  const folder = await open(dir, 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}
