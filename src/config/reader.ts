// Typed access to one parsed TOML table. Every getter returns a usable value
// (the default when the key is absent or invalid) and records an issue instead
// of throwing, so one pass reports every problem. `finish()` reports the keys
// nobody asked for: unknown keys are errors, not silently ignored.

import { TomlDate } from 'smol-toml';
import { DURATION_HINT, DURATION_UNITS_HINT, parseDuration, parseSize, SIZE_HINT, SIZE_UNITS_HINT } from './duration.js';
import type { KeyPath, Segment } from './keypath.js';
import type { Checked } from './validate.js';

export interface RawIssue {
  path: KeyPath;
  message: string;
}

export type RawTable = Record<string, unknown>;

export type TomlType = 'string' | 'integer' | 'float' | 'boolean' | 'array' | 'table' | 'datetime';

/** The TOML type name of a value parsed with `integersAsBigInt: true`. */
export function tomlType(value: unknown): TomlType {
  if (typeof value === 'string') return 'string';
  if (typeof value === 'bigint') return 'integer';
  if (typeof value === 'number') return 'float';
  if (typeof value === 'boolean') return 'boolean';
  if (Array.isArray(value)) return 'array';
  if (value instanceof TomlDate || value instanceof Date) return 'datetime';
  return 'table';
}

export function isTable(value: unknown): value is RawTable {
  return tomlType(value) === 'table' && value !== null && typeof value === 'object';
}

export class IssueSink {
  readonly issues: RawIssue[] = [];
  add(path: KeyPath, message: string): void {
    this.issues.push({ path, message });
  }
}

interface IntOptions {
  min?: number;
  max?: number;
}

export class TableReader {
  private readonly used = new Set<string>();

  constructor(
    readonly sink: IssueSink,
    readonly path: Segment[],
    private readonly raw: RawTable,
  ) {}

  /** An empty reader: every getter yields its default. */
  static empty(sink: IssueSink, path: Segment[]): TableReader {
    return new TableReader(sink, path, {});
  }

  has(key: string): boolean {
    return Object.hasOwn(this.raw, key);
  }

  keys(): string[] {
    return Object.keys(this.raw);
  }

  /** False (and an issue) when a required key is absent. */
  require(key: string, message = 'is required'): boolean {
    if (this.has(key)) return true;
    this.take(key);
    this.issue(key, message);
    return false;
  }

  /** Whether an issue was already recorded at or below this key. */
  hasIssue(key: string): boolean {
    const path = this.keyPath(key);
    return this.sink.issues.some((issue) => path.every((segment, index) => issue.path[index] === segment));
  }

  keyPath(key: string): Segment[] {
    return [...this.path, key];
  }

  issue(key: string | null, message: string): void {
    this.sink.add(key === null ? this.path : this.keyPath(key), message);
  }

  /** Raw value (marks the key as known); undefined when absent. */
  take(key: string): unknown {
    this.used.add(key);
    return this.has(key) ? this.raw[key] : undefined;
  }

  private typed<T>(key: string, expected: TomlType, what: string): T | undefined {
    const value = this.take(key);
    if (value === undefined) return undefined;
    if (tomlType(value) !== expected) {
      this.issue(key, `expected ${what}, got ${tomlType(value)}`);
      return undefined;
    }
    return value as T;
  }

  string(key: string, fallback: string): string {
    return this.typed<string>(key, 'string', 'a string') ?? fallback;
  }

  /** A string that must be present. */
  requiredString(key: string): string | undefined {
    return this.require(key) ? this.typed<string>(key, 'string', 'a string') : undefined;
  }

  /** A string checked (and possibly normalised) by `check`. */
  checked<T>(key: string, fallback: T, check: (text: string) => Checked<T>, required = false): T {
    const text = required ? this.requiredString(key) : this.typed<string>(key, 'string', 'a string');
    if (text === undefined) return fallback;
    const result = check(text);
    if (result.ok) return result.value;
    this.issue(key, result.message);
    return fallback;
  }

  oneOf<T extends string>(key: string, fallback: T, allowed: readonly T[]): T {
    return this.checked(key, fallback, (text) =>
      (allowed as readonly string[]).includes(text)
        ? { ok: true, value: text as T }
        : { ok: false, message: `must be one of ${allowed.join(', ')}; got "${text}"` },
    );
  }

  bool(key: string, fallback: boolean): boolean {
    return this.typed<boolean>(key, 'boolean', 'true or false') ?? fallback;
  }

  int(key: string, fallback: number, options: IntOptions = {}): number {
    const value = this.typed<bigint>(key, 'integer', 'an integer');
    if (value === undefined) return fallback;
    return this.inRange(key, value, fallback, options);
  }

  private inRange(key: string, value: bigint | number, fallback: number, { min, max }: IntOptions): number {
    const number = Number(value);
    if (!Number.isSafeInteger(number)) {
      this.issue(key, `${value} is too large`);
      return fallback;
    }
    if (min !== undefined && number < min) {
      this.issue(key, min === 1 ? `must be a positive integer, got ${number}` : `must be at least ${min}, got ${number}`);
      return fallback;
    }
    if (max !== undefined && number > max) {
      this.issue(key, `must be at most ${max}, got ${number}`);
      return fallback;
    }
    return number;
  }

  /** Milliseconds. `min` lets timeouts that cannot be zero say so. */
  duration(key: string, fallback: number, min = 0): number {
    const value = this.take(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'string') {
      this.issue(key, `expected ${DURATION_HINT}, got ${tomlType(value)}`);
      return fallback;
    }
    const ms = parseDuration(value);
    if (ms === undefined) {
      this.issue(key, `invalid duration "${value}": use ${DURATION_UNITS_HINT}`);
      return fallback;
    }
    if (ms < min) {
      this.issue(key, `must be at least ${min}ms, got "${value}"`);
      return fallback;
    }
    return ms;
  }

  /** Bytes, from "16KiB"-style strings or a plain integer. */
  size(key: string, fallback: number, min = 0): number {
    const value = this.take(key);
    if (value === undefined) return fallback;
    let bytes: number | undefined;
    if (typeof value === 'bigint') {
      bytes = this.inRange(key, value, NaN, {});
      if (Number.isNaN(bytes)) return fallback;
    } else if (typeof value === 'string') {
      bytes = parseSize(value);
      if (bytes === undefined) {
        this.issue(key, `invalid size "${value}": use ${SIZE_UNITS_HINT}`);
        return fallback;
      }
    } else {
      this.issue(key, `expected ${SIZE_HINT}, got ${tomlType(value)}`);
      return fallback;
    }
    if (bytes < min) {
      this.issue(key, `must be at least ${min} bytes, got ${String(value)}`);
      return fallback;
    }
    return bytes;
  }

  /** An array whose elements are all strings; element issues point at the element. */
  stringArray(key: string, fallback: string[]): string[] {
    const items = this.typed<unknown[]>(key, 'array', 'an array of strings');
    if (items === undefined) return fallback;
    let good = true;
    items.forEach((item, index) => {
      if (typeof item !== 'string') {
        this.sink.add([...this.keyPath(key), index], `expected a string, got ${tomlType(item)}`);
        good = false;
      }
    });
    return good ? (items as string[]) : fallback;
  }

  /** Each string element run through `check`; invalid elements are reported and dropped. */
  checkedArray<T>(key: string, fallback: T[], check: (text: string) => Checked<T>): T[] {
    if (!this.has(key)) {
      this.take(key);
      return fallback;
    }
    const texts = this.stringArray(key, []);
    const out: T[] = [];
    texts.forEach((text, index) => {
      const result = check(text);
      if (result.ok) out.push(result.value);
      else this.sink.add([...this.keyPath(key), index], result.message);
    });
    return out;
  }

  /** A sub-table (absent -> empty, so its getters yield defaults). */
  table(key: string): TableReader {
    const value = this.typed<RawTable>(key, 'table', 'a table');
    return new TableReader(this.sink, this.keyPath(key), value ?? {});
  }

  /** A sub-table that may be absent; null when absent or not a table. */
  optionalTable(key: string): TableReader | null {
    const value = this.typed<RawTable>(key, 'table', 'a table');
    return value === undefined ? null : new TableReader(this.sink, this.keyPath(key), value);
  }

  /** `[[key]]` entries (or an inline array of tables). */
  tables(key: string): TableReader[] {
    const items = this.typed<unknown[]>(key, 'array', 'an array of tables');
    if (items === undefined) return [];
    const out: TableReader[] = [];
    items.forEach((item, index) => {
      const path = [...this.keyPath(key), index];
      if (isTable(item)) out.push(new TableReader(this.sink, path, item));
      else this.sink.add(path, `expected a table, got ${tomlType(item)}`);
    });
    return out;
  }

  /** Reports keys present in the file that no getter asked for. */
  finish(): void {
    const known = [...this.used];
    for (const key of Object.keys(this.raw)) {
      if (this.used.has(key)) continue;
      const guess = closest(key, known);
      this.issue(key, guess ? `unknown key (did you mean "${guess}"?)` : 'unknown key');
    }
  }
}

// Suggest a known key within a small edit distance (typos, dash vs underscore),
// or one the unknown key abbreviates ("memory" -> "memory_mib").
function closest(key: string, known: string[]): string | undefined {
  const extended = known.find((candidate) => candidate.startsWith(`${key}_`));
  if (extended) return extended;
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 4)) + 1;
  for (const candidate of known) {
    const distance = editDistance(key.replaceAll('-', '_'), candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}
