// Merges Prometheus text expositions from several processes into one: each
// family's HELP/TYPE once and its samples together (Prometheus's parser rejects a
// second HELP or TYPE line, and a family split in two), every sample of a labelled
// part tagged with a label naming its process.

interface FamilyText {
  header: string[];
  samples: string[];
}

function addLabel(sample: string, name: string, value: string): string {
  const brace = sample.indexOf('{');
  const space = sample.indexOf(' ');
  if (brace >= 0 && brace < space) return `${sample.slice(0, brace + 1)}${name}="${value}",${sample.slice(brace + 1)}`;
  return `${sample.slice(0, space)}{${name}="${value}"}${sample.slice(space)}`;
}

/** One process's exposition; its samples get label="value" when label is set. */
export interface ExpositionPart {
  text: string;
  label?: string;
  value?: string;
}

export function mergeExpositions(parts: ExpositionPart[]): string {
  const families = new Map<string, FamilyText>();
  for (const part of parts) {
    let current: FamilyText | undefined;
    for (const line of part.text.split('\n')) {
      if (!line) continue;
      const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (meta) {
        const name = meta[2]!;
        current = families.get(name);
        if (!current) {
          current = { header: [], samples: [] };
          families.set(name, current);
        }
        if (current.header.length < 2 && !current.header.some((h) => h.startsWith(`# ${meta[1]}`))) current.header.push(line);
        continue;
      }
      if (line.startsWith('#')) continue;
      current?.samples.push(part.label ? addLabel(line, part.label, part.value ?? '') : line);
    }
  }
  const out: string[] = [];
  for (const family of families.values()) out.push(...family.header, ...family.samples);
  return out.length > 0 ? out.join('\n') + '\n' : '';
}

/** Sum of every sample of a family (all label sets) in an exposition. */
export function sumFamily(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const next = line.charAt(name.length);
    if (next !== '{' && next !== ' ') continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return sum;
}
