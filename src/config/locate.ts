// Maps key paths to line:column in the TOML source. smol-toml returns plain
// values without positions, so this re-scans the (already parsed, hence valid)
// text just deeply enough to know where every key, table header and array
// element starts. It never interprets values beyond skipping over them.

import { formatPath, type KeyPath, type Segment } from './keypath.js';

export interface SourcePosition {
  line: number; // 1-based
  column: number; // 1-based
}

export interface KeyLocator {
  /** Position of the path, or of its nearest recorded ancestor (its table header), or 1:1. */
  find(path: KeyPath): SourcePosition;
}

export function locateKeys(source: string): KeyLocator {
  const positions = new Map<string, SourcePosition>();
  try {
    new Scanner(source, positions).scanDocument();
  } catch {
    // Best effort: whatever was recorded before the scanner got lost stays usable.
  }
  return {
    find(path) {
      for (let length = path.length; length > 0; length--) {
        const hit = positions.get(formatPath(path.slice(0, length)));
        if (hit) return hit;
      }
      return { line: 1, column: 1 };
    },
  };
}

const BARE_KEY_CHAR = /[A-Za-z0-9_-]/;

class Scanner {
  private pos = 0;
  private readonly lineStarts: number[] = [0];
  /** Resolved array-of-tables path -> number of entries seen so far. */
  private readonly tableArrays = new Map<string, number>();

  constructor(
    private readonly text: string,
    private readonly positions: Map<string, SourcePosition>,
  ) {
    for (let i = 0; i < text.length; i++) if (text[i] === '\n') this.lineStarts.push(i + 1);
  }

  scanDocument(): void {
    let table: Segment[] = [];
    for (;;) {
      this.skipBlank(true);
      if (this.pos >= this.text.length) return;
      if (this.peek() === '[') {
        table = this.scanHeader();
      } else {
        this.scanKeyValue(table);
      }
    }
  }

  // `[a.b]` or `[[a.b]]`; returns the resolved path keys below it belong to.
  private scanHeader(): Segment[] {
    const start = this.pos;
    const isArray = this.text.startsWith('[[', this.pos);
    this.pos += isArray ? 2 : 1;
    this.skipSpaces();
    const keys = this.scanKey().map((part) => part.name);
    this.skipSpaces();
    this.pos += isArray ? 2 : 1;

    // Earlier segments that name arrays of tables refer to their latest entry.
    const resolved: Segment[] = [];
    keys.forEach((key, index) => {
      resolved.push(key);
      const count = this.tableArrays.get(formatPath(resolved));
      if (index < keys.length - 1 && count !== undefined) resolved.push(count - 1);
    });
    if (isArray) {
      const name = formatPath(resolved);
      const count = this.tableArrays.get(name) ?? 0;
      this.tableArrays.set(name, count + 1);
      resolved.push(count);
    }
    this.recordWithAncestors(resolved, start);
    return resolved;
  }

  private scanKeyValue(table: Segment[]): void {
    const parts = this.scanKey();
    const path = [...table];
    for (const part of parts) {
      path.push(part.name);
      this.record(path, part.start);
    }
    this.skipSpaces();
    if (this.peek() === '=') this.pos++;
    this.skipSpaces();
    this.scanValue(path);
  }

  // A dotted key: bare, "basic" or 'literal' segments separated by dots.
  private scanKey(): { name: string; start: number }[] {
    const parts: { name: string; start: number }[] = [];
    for (;;) {
      this.skipSpaces();
      const start = this.pos;
      const ch = this.peek();
      let name: string;
      if (ch === '"') {
        name = decodeBasic(this.text.slice(start, this.skipBasicString()));
      } else if (ch === "'") {
        const end = this.skipLiteralString();
        name = this.text.slice(start + 1, end - 1);
      } else {
        while (this.pos < this.text.length && BARE_KEY_CHAR.test(this.peek())) this.pos++;
        if (this.pos === start) throw new Error('key expected');
        name = this.text.slice(start, this.pos);
      }
      parts.push({ name, start });
      this.skipSpaces();
      if (this.peek() !== '.') return parts;
      this.pos++;
    }
  }

  private scanValue(path: Segment[]): void {
    const ch = this.peek();
    if (ch === '"') {
      this.skipBasicString();
    } else if (ch === "'") {
      this.skipLiteralString();
    } else if (ch === '[') {
      this.scanArray(path);
    } else if (ch === '{') {
      this.scanInlineTable(path);
    } else {
      // Numbers, booleans, dates (which may contain a space): up to a delimiter.
      while (this.pos < this.text.length && !',]}#\r\n'.includes(this.peek())) this.pos++;
    }
  }

  private scanArray(path: Segment[]): void {
    this.pos++; // [
    for (let index = 0; ; index++) {
      this.skipBlank(true);
      if (this.pos >= this.text.length) throw new Error('unterminated array');
      if (this.peek() === ']') break;
      const element = [...path, index];
      this.record(element, this.pos);
      this.scanValue(element);
      this.skipBlank(true);
      if (this.peek() === ',') this.pos++;
    }
    this.pos++; // ]
  }

  private scanInlineTable(path: Segment[]): void {
    this.pos++; // {
    for (;;) {
      // Newlines are only legal here from TOML 1.1 on; tolerating them costs nothing.
      this.skipBlank(true);
      if (this.pos >= this.text.length) throw new Error('unterminated inline table');
      if (this.peek() === '}') break;
      this.scanKeyValue(path);
      this.skipBlank(true);
      if (this.peek() === ',') this.pos++;
    }
    this.pos++; // }
  }

  /** Returns the offset just past the closing quote(s). */
  private skipBasicString(): number {
    const multiline = this.text.startsWith('"""', this.pos);
    this.pos += multiline ? 3 : 1;
    while (this.pos < this.text.length) {
      const ch = this.text[this.pos];
      if (ch === '\\') {
        this.pos += 2;
      } else if (multiline && this.text.startsWith('"""', this.pos)) {
        this.pos += 3;
        // Up to two quotes may sit right before the closing delimiter.
        while (this.peek() === '"') this.pos++;
        return this.pos;
      } else if (!multiline && ch === '"') {
        return ++this.pos;
      } else {
        this.pos++;
      }
    }
    throw new Error('unterminated string');
  }

  private skipLiteralString(): number {
    const multiline = this.text.startsWith("'''", this.pos);
    const delimiter = multiline ? "'''" : "'";
    const end = this.text.indexOf(delimiter, this.pos + delimiter.length);
    if (end < 0) throw new Error('unterminated string');
    this.pos = end + delimiter.length;
    if (multiline) while (this.peek() === "'") this.pos++;
    return this.pos;
  }

  private skipSpaces(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++;
  }

  // Spaces, comments and (when allowed) line breaks.
  private skipBlank(newlines: boolean): void {
    for (;;) {
      this.skipSpaces();
      const ch = this.peek();
      if (ch === '#') {
        while (this.pos < this.text.length && this.peek() !== '\n') this.pos++;
      } else if (newlines && (ch === '\n' || ch === '\r')) {
        this.pos++;
      } else {
        return;
      }
    }
  }

  private peek(): string {
    return this.text[this.pos] ?? '';
  }

  private record(path: Segment[], offset: number): void {
    const name = formatPath(path);
    // The first mention is where a key is defined; later mentions extend it.
    if (!this.positions.has(name)) this.positions.set(name, this.position(offset));
  }

  private recordWithAncestors(path: Segment[], offset: number): void {
    for (let length = 1; length <= path.length; length++) this.record(path.slice(0, length), offset);
  }

  private position(offset: number): SourcePosition {
    let low = 0;
    let high = this.lineStarts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) low = mid;
      else high = mid - 1;
    }
    return { line: low + 1, column: offset - this.lineStarts[low]! + 1 };
  }
}

// TOML basic-string escapes are a superset of JSON's; the rare extras are kept verbatim.
function decodeBasic(quoted: string): string {
  try {
    return JSON.parse(quoted) as string;
  } catch {
    return quoted.slice(1, -1);
  }
}
