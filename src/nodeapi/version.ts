/** Numeric parts of a version ("1.2.3", "v1.2", "1.2.3-rc1" -> [1, 2, 3]); undefined when it has none. */
export function parseVersion(text: string): number[] | undefined {
  const match = /^v?(\d+(?:\.\d+)*)(?:[-+.][0-9A-Za-z.-]*)?$/.exec(text.trim());
  return match ? match[1]!.split('.').map(Number) : undefined;
}

/** <0, 0, >0 like a comparator; missing parts count as 0. */
export function compareVersions(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const diff = (a[i] ?? 0) - (b[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}
