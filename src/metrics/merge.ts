// Merges the families of several processes (the primary and its workers) into one
// list: each family once (Prometheus's parser rejects a second HELP or TYPE line, and
// a family split in two), with its series together, every series of a labelled part
// tagged with a label naming its process (first, as `worker="0",class="2xx"`).

import type { FamilySnapshot, Labels } from './registry.js';

/** One process's families; `labels` are added to each of its series. */
export interface SnapshotPart {
  families: readonly FamilySnapshot[];
  labels?: Labels;
}

/** A copy of the family whose series carry `labels` first. */
function tagged(family: FamilySnapshot, labels: Labels | undefined): FamilySnapshot {
  const series = (family.series as Array<{ labels: Labels }>).map((s) => ({ ...s, labels: { ...labels, ...s.labels } }));
  return { ...family, series } as FamilySnapshot;
}

export function mergeSnapshots(parts: readonly SnapshotPart[]): FamilySnapshot[] {
  const merged = new Map<string, FamilySnapshot>();
  for (const { families, labels } of parts) {
    for (const family of families) {
      const into = merged.get(family.name);
      if (!into) merged.set(family.name, tagged(family, labels));
      // Same name, same type (and a histogram's same buckets) in every process of one release.
      else if (into.type === family.type) (into.series as unknown[]).push(...tagged(family, labels).series);
    }
  }
  return [...merged.values()];
}
