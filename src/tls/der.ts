// Just enough DER for OCSP: read a TLV tree, write TLVs. Certificates are parsed by
// node:crypto; this covers the few structures it does not expose (the issuer's raw
// subject and key bits for an OCSP CertID, and the fields of an OCSP response).

export interface Tlv {
  tag: number;
  /** Content bytes. */
  content: Buffer;
  /** The whole element (tag, length, content). */
  raw: Buffer;
  /** Children of a constructed element. */
  children: Tlv[];
}

export class DerError extends Error {
  override readonly name = 'DerError';
}

/** Parses one element at offset; constructed elements get their children parsed. */
export function readTlv(buf: Buffer, offset = 0): Tlv {
  if (offset + 2 > buf.length) throw new DerError('truncated DER');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
  let length = buf[offset + 1]!;
  let header = 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4) throw new DerError('unsupported DER length');
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + buf[offset + 2 + i]!;
    header += bytes;
  }
  const end = offset + header + length;
  if (end > buf.length) throw new DerError('truncated DER');
  const content = buf.subarray(offset + header, end);
  const children: Tlv[] = [];
  if (tag & 0x20) {
    let at = 0;
    while (at < content.length) {
      const child = readTlv(content, at);
      children.push(child);
      at += child.raw.length;
    }
  }
  return { tag, content, raw: buf.subarray(offset, end), children };
}

function lengthBytes(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One element from a tag and its content (or children, concatenated). */
export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

export const TAG = {
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
} as const;

/** Encodes a dotted OID. */
export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const bytes = [40 * parts[0]! + parts[1]!];
  for (const part of parts.slice(2)) {
    const chunk: number[] = [];
    let n = part;
    do {
      chunk.unshift(n & 0x7f);
      n = Math.floor(n / 128);
    } while (n > 0);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i]! |= 0x80;
    bytes.push(...chunk);
  }
  return tlv(TAG.OID, Buffer.from(bytes));
}

/** 'YYYYMMDDHHMMSSZ' (GeneralizedTime) to a Date. */
export function generalizedTime(content: Buffer): Date {
  const s = content.toString('latin1');
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?Z$/.exec(s);
  if (!m) throw new DerError(`bad GeneralizedTime ${JSON.stringify(s)}`);
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

export function toGeneralizedTime(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(iso, 'latin1'));
}
