// Program hashes: 64 lowercase hex chars (sha256 of the defining message), also
// written as 52 chars of RFC 4648 base32 without padding in host labels.

const HEX64 = /^[0-9a-f]{64}$/;
const B32_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
// char code -> 5-bit value (both cases), -1 for anything else: decoding is on the request path.
const B32_VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < 32; i++) {
  B32_VALUES[B32_ALPHABET.charCodeAt(i)] = i;
  B32_VALUES[B32_ALPHABET.toUpperCase().charCodeAt(i)] = i;
}

/** True for a canonical program hash (lowercase). */
export function isProgramHash(value: string): boolean {
  return HEX64.test(value);
}

/** Lowercases and validates; returns undefined when not a 64-hex hash. */
export function normalizeHash(value: string): string | undefined {
  const lower = value.toLowerCase();
  return HEX64.test(lower) ? lower : undefined;
}

/** RFC 4648 base32, lowercase, no padding. */
export function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32_ALPHABET[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += B32_ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

/** Decodes case-insensitive unpadded base32; undefined on any invalid char or non-zero trailing bits. */
export function base32Decode(text: string): Uint8Array | undefined {
  const out = new Uint8Array(Math.floor((text.length * 5) / 8));
  let buffer = 0;
  let bits = 0;
  let index = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const value = code < 128 ? B32_VALUES[code]! : -1;
    if (value < 0) return undefined;
    buffer = (buffer << 5) | value;
    bits += 5;
    if (bits >= 8) {
      out[index++] = (buffer >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
    buffer &= (1 << bits) - 1;
  }
  // Leftover bits must be zero, otherwise two labels would map to one hash.
  if (buffer !== 0) return undefined;
  return out;
}

/** The 52-char host label for a hash. */
export function hashToLabel(hash: string): string {
  return base32Encode(Buffer.from(hash, 'hex'));
}

/** The hash for a host label, or undefined when the label is not a program label. */
export function labelToHash(label: string): string | undefined {
  if (label.length !== 52) return undefined;
  const bytes = base32Decode(label);
  if (!bytes || bytes.length !== 32) return undefined;
  return Buffer.from(bytes).toString('hex');
}
