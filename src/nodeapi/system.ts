// Host facts for /about/usage/system and /about/capability, read from /proc and
// /sys. Usage is sampled in the background: monitors give the page 5 s, and a page
// must never wait on the filesystem or another process.

import { readFile, readdir, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../common/index.js';
import type { Capability, SystemUsage, UsageHistory, UsageSample } from './types.js';

const log = createLogger('nodeapi');

/** CPU flags that say the host can run confidential VMs (AMD SEV family). */
const CONFIDENTIAL_FLAGS = ['sev', 'sev_es', 'sev_snp'];

export interface CpuInfo {
  vendor: string | null;
  model: string | null;
  flags: string[];
}

/** The first processor block of /proc/cpuinfo (x86 and arm spell fields differently). */
export function parseCpuInfo(text: string): CpuInfo {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '' && fields.size > 0) break;
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim().toLowerCase();
    if (!fields.has(key)) fields.set(key, line.slice(colon + 1).trim());
  }
  const flags = (fields.get('flags') ?? fields.get('features') ?? '').split(/\s+/).filter(Boolean);
  return {
    vendor: fields.get('vendor_id') || fields.get('cpu implementer') || null,
    model: fields.get('model name') || fields.get('cpu model') || null,
    flags,
  };
}

/** kB values of /proc/meminfo. */
export function parseMemInfo(text: string): { totalKb: number; availableKb: number } {
  const value = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  const total = value('MemTotal');
  const available = value('MemAvailable');
  return { totalKb: Number.isFinite(total) ? total : Math.round(os.totalmem() / 1024), availableKb: Number.isFinite(available) ? available : Math.round(os.freemem() / 1024) };
}

/** The reference's names (aleph-message's CpuProperties allows only these two); null for any other. */
function referenceArchitecture(): 'x86_64' | 'arm64' | null {
  const machine = os.machine();
  return machine === 'x86_64' ? 'x86_64' : machine === 'aarch64' || machine === 'arm64' ? 'arm64' : null;
}

export function confidentialFeatures(flags: string[]): string[] {
  return CONFIDENTIAL_FLAGS.filter((flag) => flags.includes(flag));
}

export interface CoreFrequencies {
  min: number;
  max: number;
}

/** "cpu MHz" of every processor in /proc/cpuinfo (x86; arm kernels have none). */
export function cpuinfoMhz(text: string): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    if (!line.toLowerCase().startsWith('cpu mhz')) continue;
    const value = Number(line.slice(line.indexOf(':') + 1).trim());
    if (Number.isFinite(value)) out.push(value);
  }
  return out;
}

const average = (values: number[]) => values.reduce((sum, v) => sum + v, 0) / values.length;

/**
 * Core frequencies in MHz as the reference computes them: psutil.cpu_freq() (the
 * average over cores of cpufreq's scaling limits, or of /proc/cpuinfo's current speed
 * when there is no cpufreq), then `min or current`, `max or current`. So they are numbers
 * on machines without cpufreq (most VMs) too; 0 when the kernel tells no speed at all
 * (where the reference fails). `root` is '/' except in tests.
 */
export async function coreFrequencies(root = '/'): Promise<CoreFrequencies> {
  const base = path.join(root, 'sys/devices/system/cpu');
  const mhz = cpuinfoMhz(await readFile(path.join(root, 'proc/cpuinfo'), 'utf8').catch(() => ''));
  const readKhz = async (file: string): Promise<number | undefined> => {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    const value = text === undefined ? NaN : Number(text.trim());
    return Number.isFinite(value) ? value : undefined;
  };
  const numbered = (names: string[], pattern: RegExp) => names.filter((n) => pattern.test(n)).sort((a, b) => Number(/\d+/.exec(a)![0]) - Number(/\d+/.exec(b)![0]));
  let dirs = numbered(await readdir(path.join(base, 'cpufreq')).catch(() => []), /^policy\d+$/).map((n) => path.join(base, 'cpufreq', n));
  if (dirs.length === 0) {
    const cpus = numbered(await readdir(base).catch(() => []), /^cpu\d+$/);
    const withFreq = await Promise.all(cpus.map(async (n) => ((await readdir(path.join(base, n, 'cpufreq')).catch(() => undefined)) ? path.join(base, n, 'cpufreq') : undefined)));
    dirs = withFreq.filter((d): d is string => d !== undefined);
  }
  let current: number[];
  let mins: number[] = [];
  let maxes: number[] = [];
  if (dirs.length > 0) {
    const cores = await Promise.all(dirs.map(async (dir, i) => ({
      // psutil prefers /proc/cpuinfo's speed when it has one line per cpufreq policy.
      current: dirs.length === mhz.length ? mhz[i]! : ((await readKhz(path.join(dir, 'scaling_cur_freq'))) ?? (await readKhz(path.join(dir, 'cpuinfo_cur_freq'))) ?? 0) / 1000,
      min: ((await readKhz(path.join(dir, 'scaling_min_freq'))) ?? 0) / 1000,
      max: ((await readKhz(path.join(dir, 'scaling_max_freq'))) ?? 0) / 1000,
    })));
    current = cores.map((c) => c.current);
    mins = cores.map((c) => c.min);
    maxes = cores.map((c) => c.max);
  } else {
    current = mhz;
  }
  if (current.length === 0) return { min: 0, max: 0 };
  const now = average(current);
  return { min: (mins.length ? average(mins) : 0) || now, max: (maxes.length ? average(maxes) : 0) || now };
}

/** statfs of the nearest existing ancestor (the cache folder may not exist yet). */
async function diskOf(dir: string): Promise<{ total_kB: number; available_kB: number }> {
  let current = path.resolve(dir);
  for (;;) {
    try {
      const fs = await statfs(current);
      // kB of 1000 bytes, as the reference divides psutil's byte counts.
      return { total_kB: Math.floor((fs.blocks * fs.bsize) / 1000), available_kB: Math.floor((fs.bavail * fs.bsize) / 1000) };
    } catch {
      const parent = path.dirname(current);
      if (parent === current) return { total_kB: 0, available_kB: 0 };
      current = parent;
    }
  }
}

async function readCpuInfo(): Promise<CpuInfo> {
  return parseCpuInfo(await readFile('/proc/cpuinfo', 'utf8').catch(() => ''));
}

export interface SystemSamplerOptions {
  /** The filesystem of program artifacts and volumes. */
  diskDir: string;
  /** How often usage is re-read. */
  intervalMs?: number;
  /** How far back history() goes; default USAGE_HISTORY_MS. */
  historyMs?: number;
}

/** Busy and total jiffies of all CPUs since boot, from the "cpu" line of /proc/stat. */
export function parseCpuTimes(text: string): { busy: number; total: number } | undefined {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return undefined;
  // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (fields.length < 4 || fields.some((v) => !Number.isFinite(v))) return undefined;
  const total = fields.reduce((sum, v) => sum + v, 0);
  const idle = fields[3]! + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** How much usage history the node keeps in memory (the index page's chart). */
export const USAGE_HISTORY_MS = 60 * 60_000;

/** Keeps a recent /about/usage/system answer and an hour of samples; refreshed by a timer, never by a request. */
export class SystemSampler {
  private current: SystemUsage | undefined;
  private capabilityValue: Capability | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly intervalMs: number;
  private readonly samples: UsageSample[] = [];
  private readonly maxSamples: number;
  private lastCpuTimes: { busy: number; total: number } | undefined;

  constructor(private readonly options: SystemSamplerOptions) {
    this.intervalMs = options.intervalMs ?? 10_000;
    this.maxSamples = Math.ceil((options.historyMs ?? USAGE_HISTORY_MS) / this.intervalMs);
  }

  async start(): Promise<void> {
    const cpu = await readCpuInfo();
    const meminfo = parseMemInfo(await readFile('/proc/meminfo', 'utf8').catch(() => ''));
    const frequencies = await coreFrequencies();
    this.capabilityValue = {
      cpu: {
        architecture: referenceArchitecture(),
        vendor: cpu.vendor,
        model: cpu.model,
        frequency: Math.round(frequencies.max) || null,
        count: os.cpus().length,
        features: confidentialFeatures(cpu.flags),
      },
      // The kernel tells the size; type and clock need DMI tables (dmidecode, root): not guessed.
      memory: { size: meminfo.totalKb * 1024, units: 'B', type: null, clock: null },
    };
    await this.sample(cpu, frequencies);
    this.timer = setInterval(() => {
      this.sample().catch((error: Error) => log.warn('system usage sample failed', { error: error.message }));
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  usage(): SystemUsage {
    if (!this.current) throw new Error('system sampler not started');
    return this.current;
  }

  capability(): Capability {
    if (!this.capabilityValue) throw new Error('system sampler not started');
    return this.capabilityValue;
  }

  /** The last hour of samples, oldest first. */
  history(): UsageHistory {
    return { interval_seconds: this.intervalMs / 1000, samples: [...this.samples] };
  }

  private async sample(cpuInfo?: CpuInfo, frequencies?: CoreFrequencies): Promise<void> {
    const started = new Date();
    const [cpu, meminfo, disk, freq, cpuTimes] = await Promise.all([
      cpuInfo ?? readCpuInfo(),
      readFile('/proc/meminfo', 'utf8').catch(() => '').then(parseMemInfo),
      diskOf(this.options.diskDir),
      frequencies ?? coreFrequencies(),
      readFile('/proc/stat', 'utf8').catch(() => '').then(parseCpuTimes),
    ]);
    const [load1, load5, load15] = os.loadavg() as [number, number, number];
    // CPU use over the last interval; the first sample has no interval before it.
    const previous = this.lastCpuTimes;
    this.lastCpuTimes = cpuTimes;
    const elapsed = previous && cpuTimes ? cpuTimes.total - previous.total : 0;
    const cpuPercent = previous && cpuTimes && elapsed > 0 ? Math.round((1000 * (cpuTimes.busy - previous.busy)) / elapsed) / 10 : null;
    this.samples.push({ timestamp: started.toISOString(), cpu_percent: cpuPercent, load1, mem_total_kB: meminfo.totalKb, mem_available_kB: meminfo.availableKb });
    if (this.samples.length > this.maxSamples) this.samples.splice(0, this.samples.length - this.maxSamples);
    this.current = {
      cpu: { count: os.cpus().length, load_average: { load1, load5, load15 }, core_frequencies: freq },
      // /proc/meminfo counts KiB; the reference gives psutil's bytes / 1000 (total rounded up, available down).
      mem: { total_kB: Math.ceil((meminfo.totalKb * 1024) / 1000), available_kB: Math.floor((meminfo.availableKb * 1024) / 1000) },
      disk,
      period: { start_timestamp: started.toISOString(), duration_seconds: this.intervalMs / 1000 },
      properties: { cpu: { architecture: referenceArchitecture(), vendor: cpu.vendor, features: confidentialFeatures(cpu.flags) } },
      // No GPU passthrough in aleph-edge: an empty list is the truth, not a placeholder.
      gpu: { devices: [], available_devices: [] },
      active: true,
    };
  }
}
