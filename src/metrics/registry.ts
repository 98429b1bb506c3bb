// A small Prometheus registry: counters, gauges (set or sampled at scrape time)
// and histograms, each with labels. Rendered in the text exposition format 0.0.4.

export type Labels = Record<string, string>;

/** A counter's or gauge's series: its labels (in the order they are rendered) and value. */
export interface ValueSeries {
  labels: Labels;
  value: number;
}

/** A histogram's series: cumulative counts per bucket (as `buckets`), sum and count. */
export interface HistogramSeries {
  labels: Labels;
  counts: number[];
  sum: number;
  count: number;
}

/**
 * A family's state as data: what a worker sends the primary, what is merged and
 * summed, and what the exposition is rendered from (the only place text is made).
 */
export type FamilySnapshot =
  | { name: string; help: string; type: 'counter' | 'gauge'; series: ValueSeries[] }
  | { name: string; help: string; type: 'histogram'; buckets: number[]; series: HistogramSeries[] };

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  snapshot(): FamilySnapshot;
}

// Runs for every request (a counter and a histogram each): no sort, array or
// regex replace in the common case of one plain label.
function labelKey(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  if (keys.length > 1) keys.sort();
  let key = '';
  for (let i = 0; i < keys.length; i++) {
    const name = keys[i]!;
    key += `${i > 0 ? ',' : ''}${name}="${escapeLabel(labels[name] ?? '')}"`;
  }
  return key;
}

/** The labels of a new series, kept in the key's order (sorted), so one label set renders one way. */
function sortedLabels(labels: Labels): Labels {
  const out: Labels = {};
  for (const name of Object.keys(labels).sort()) out[name] = labels[name] ?? '';
  return out;
}

const NEEDS_ESCAPE = /[\\\n"]/;

function escapeLabel(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

export class Counter implements Family {
  readonly type = 'counter' as const;
  private readonly values = new Map<string, ValueSeries>();
  private collector?: () => number;
  constructor(readonly name: string, readonly help: string) {}
  /** Sample a total kept elsewhere (below metrics/, e.g. the logger) at scrape time. */
  collect(fn: () => number): void {
    this.collector = fn;
  }
  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    const series = this.values.get(key);
    if (series) series.value += by;
    else this.values.set(key, { labels: sortedLabels(labels), value: by });
  }
  /** The value of one label set (0 when it was never counted). */
  get(labels: Labels = {}): number {
    if (this.collector) return labelKey(labels) === '' ? this.collector() : 0;
    return this.values.get(labelKey(labels))?.value ?? 0;
  }
  /** Sum over every label set. */
  total(): number {
    return sumSeries(this.series());
  }
  snapshot(): FamilySnapshot {
    return { name: this.name, help: this.help, type: this.type, series: this.series() };
  }
  private series(): ValueSeries[] {
    if (this.collector) return [{ labels: {}, value: this.collector() }];
    return [...this.values.values()].map((s) => ({ labels: s.labels, value: s.value }));
  }
}

export class Gauge implements Family {
  readonly type = 'gauge' as const;
  private readonly values = new Map<string, ValueSeries>();
  private collector?: () => Array<[Labels, number]>;
  constructor(readonly name: string, readonly help: string) {}
  set(value: number, labels: Labels = {}): void {
    const key = labelKey(labels);
    const series = this.values.get(key);
    if (series) series.value = value;
    else this.values.set(key, { labels: sortedLabels(labels), value });
  }
  /** Sample values at scrape time instead of tracking them. */
  collect(fn: () => Array<[Labels, number]>): void {
    this.collector = fn;
  }
  snapshot(): FamilySnapshot {
    const series = this.collector
      ? this.collector().map(([labels, value]) => ({ labels: sortedLabels(labels), value }))
      : [...this.values.values()].map((s) => ({ labels: s.labels, value: s.value }));
    return { name: this.name, help: this.help, type: this.type, series };
  }
}

export const DEFAULT_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class Histogram implements Family {
  readonly type = 'histogram' as const;
  private readonly series = new Map<string, HistogramSeries>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[] = DEFAULT_SECONDS_BUCKETS) {}
  observe(value: number, labels: Labels = {}): void {
    const key = labelKey(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels: sortedLabels(labels), counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }
  count(labels: Labels = {}): number {
    return this.series.get(labelKey(labels))?.count ?? 0;
  }
  snapshot(): FamilySnapshot {
    const series = [...this.series.values()].map((s) => ({ labels: s.labels, counts: [...s.counts], sum: s.sum, count: s.count }));
    return { name: this.name, help: this.help, type: this.type, buckets: [...this.buckets], series };
  }
}

function sumSeries(series: ValueSeries[]): number {
  let sum = 0;
  for (const s of series) sum += s.value;
  return sum;
}

export class MetricsRegistry {
  private readonly families = new Map<string, Family>();

  counter(name: string, help: string): Counter {
    return this.register(name, () => new Counter(name, help), 'counter');
  }
  gauge(name: string, help: string): Gauge {
    return this.register(name, () => new Gauge(name, help), 'gauge');
  }
  histogram(name: string, help: string, buckets?: number[]): Histogram {
    return this.register(name, () => new Histogram(name, help, buckets), 'histogram');
  }

  /**
   * One series' value, read as data: a counter's or gauge's value, a histogram's count;
   * 0 when the family or the label set is absent.
   */
  value(name: string, labels: Labels = {}): number {
    const family = this.families.get(name)?.snapshot();
    if (!family) return 0;
    const key = labelKey(labels);
    if (family.type === 'histogram') return family.series.find((s) => labelKey(s.labels) === key)?.count ?? 0;
    return family.series.find((s) => labelKey(s.labels) === key)?.value ?? 0;
  }

  /** Every family's current state, as data. */
  snapshot(): FamilySnapshot[] {
    return [...this.families.values()].map((family) => family.snapshot());
  }

  /** Prometheus text exposition format. */
  render(): string {
    return renderExposition(this.snapshot());
  }

  // Registering the same name twice returns the existing family, so components
  // can be re-created on reload without duplicate series.
  private register<T extends Family>(name: string, make: () => T, type: Family['type']): T {
    const existing = this.families.get(name);
    if (existing) {
      if (existing.type !== type) throw new Error(`metric ${name} already registered as ${existing.type}`);
      return existing as T;
    }
    const family = make();
    this.families.set(name, family);
    return family;
  }
}

/** Sum of a counter's or gauge's series over every label set (0 when the family is absent). */
export function familyTotal(families: readonly FamilySnapshot[], name: string): number {
  let sum = 0;
  for (const family of families) if (family.name === name && family.type !== 'histogram') sum += sumSeries(family.series);
  return sum;
}

/** Label pairs in the order given (a series' own labels are already sorted). */
function renderLabels(labels: Labels, extra = ''): string {
  let out = '';
  for (const name in labels) out += `${out ? ',' : ''}${name}="${escapeLabel(labels[name]!)}"`;
  if (extra) out += `${out ? ',' : ''}${extra}`;
  return out;
}

function sample(name: string, labels: string, value: number): string {
  return labels ? `${name}{${labels}} ${value}` : `${name} ${value}`;
}

/** The text exposition format 0.0.4 of some families. */
export function renderExposition(families: readonly FamilySnapshot[]): string {
  const out: string[] = [];
  for (const family of families) {
    out.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.type}`);
    if (family.type !== 'histogram') {
      for (const s of family.series) out.push(sample(family.name, renderLabels(s.labels), s.value));
      continue;
    }
    for (const s of family.series) {
      family.buckets.forEach((le, i) => out.push(sample(`${family.name}_bucket`, renderLabels(s.labels, `le="${le}"`), s.counts[i]!)));
      out.push(sample(`${family.name}_bucket`, renderLabels(s.labels, 'le="+Inf"'), s.count));
      out.push(sample(`${family.name}_sum`, renderLabels(s.labels), s.sum));
      out.push(sample(`${family.name}_count`, renderLabels(s.labels), s.count));
    }
  }
  return out.join('\n') + '\n';
}
