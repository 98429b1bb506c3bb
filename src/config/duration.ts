// Durations and sizes as written in the config: a number with a unit, so that
// "60" can never be misread as seconds vs minutes. Compound durations ("1h30m")
// are accepted because operators write them.

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
  kB: 1000,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  TB: 1000 ** 4,
};

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
const SIZE_TEXT = /^(\d+(?:\.\d+)?)\s*([A-Za-z]+)$/;

/** Milliseconds for "250ms", "20s", "1h30m"...; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  if (text === '') return undefined;
  let total = 0;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < text.length) {
    const match = DURATION_PART.exec(text);
    if (!match) return undefined;
    total += Number(match[1]) * DURATION_UNITS[match[2]!]!;
  }
  // Sub-millisecond fractions have no meaning for timers.
  const ms = Math.round(total);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Bytes for "16KiB", "1MiB", "512B"...; undefined when malformed or not a whole byte count. */
export function parseSize(text: string): number | undefined {
  const match = SIZE_TEXT.exec(text.trim());
  if (!match) return undefined;
  const unit = SIZE_UNITS[match[2]!];
  if (unit === undefined) return undefined;
  const bytes = Number(match[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

export const DURATION_HINT = 'a duration string like "20s"';
export const DURATION_UNITS_HINT = 'a number and a unit (ms, s, m, h, d), like "20s" or "1h30m"';
export const SIZE_HINT = 'a size like "16KiB" or an integer byte count';
export const SIZE_UNITS_HINT = 'a number and a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), like "16KiB"';
