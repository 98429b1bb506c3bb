// A small Prometheus registry: counters, gauges (set or sampled at scrape time)
// and histograms, each with labels. Rendered in the text exposition format 0.0.4.

export type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  render(): string[];
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

const NEEDS_ESCAPE = /[\\\n"]/;

function escapeLabel(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function sample(name: string, key: string, value: number): string {
  return key ? `${name}{${key}} ${value}` : `${name} ${value}`;
}

export class Counter implements Family {
  readonly type = 'counter' as const;
  private readonly values = new Map<string, number>();
  private collector?: () => number;
  constructor(readonly name: string, readonly help: string) {}
  /** Sample a total kept elsewhere (below metrics/, e.g. the logger) at scrape time. */
  collect(fn: () => number): void {
    this.collector = fn;
  }
  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  /** Sum over every label set. */
  total(): number {
    let sum = 0;
    for (const v of this.values.values()) sum += v;
    return sum;
  }
  render(): string[] {
    if (this.collector) return [sample(this.name, '', this.collector())];
    return [...this.values].map(([key, value]) => sample(this.name, key, value));
  }
}

export class Gauge implements Family {
  readonly type = 'gauge' as const;
  private readonly values = new Map<string, number>();
  private collector?: () => Array<[Labels, number]>;
  constructor(readonly name: string, readonly help: string) {}
  set(value: number, labels: Labels = {}): void {
    this.values.set(labelKey(labels), value);
  }
  /** Sample values at scrape time instead of tracking them. */
  collect(fn: () => Array<[Labels, number]>): void {
    this.collector = fn;
  }
  render(): string[] {
    const entries: Array<[string, number]> = this.collector
      ? this.collector().map(([labels, value]) => [labelKey(labels), value])
      : [...this.values];
    return entries.map(([key, value]) => sample(this.name, key, value));
  }
}

export const DEFAULT_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class Histogram implements Family {
  readonly type = 'histogram' as const;
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[] = DEFAULT_SECONDS_BUCKETS) {}
  observe(value: number, labels: Labels = {}): void {
    const key = labelKey(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }
  count(labels: Labels = {}): number {
    return this.series.get(labelKey(labels))?.count ?? 0;
  }
  render(): string[] {
    const lines: string[] = [];
    for (const [key, s] of this.series) {
      const prefix = key ? `${key},` : '';
      this.buckets.forEach((le, i) => lines.push(`${this.name}_bucket{${prefix}le="${le}"} ${s.counts[i]}`));
      lines.push(`${this.name}_bucket{${prefix}le="+Inf"} ${s.count}`);
      lines.push(sample(`${this.name}_sum`, key, s.sum));
      lines.push(sample(`${this.name}_count`, key, s.count));
    }
    return lines;
  }
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

  /** Prometheus text exposition format. */
  render(): string {
    const out: string[] = [];
    for (const family of this.families.values()) {
      out.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.type}`, ...family.render());
    }
    return out.join('\n') + '\n';
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
