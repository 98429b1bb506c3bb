// Host facts for /about/usage/system and /about/capability, read from /proc and
// /sys. Usage is sampled in the background: monitors give the page 5 s, and a page
// must never wait on the filesystem or another process.

import { readFile, readdir, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../common/index.js';
import type { Capability, SystemUsage } from './types.js';

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

export function confidentialFeatures(flags: string[]): string[] {
  return CONFIDENTIAL_FLAGS.filter((flag) => flags.includes(flag));
}

/** Min and max core frequency in MHz: cpufreq limits when the kernel exposes them, else the cores' current speeds. */
async function coreFrequencies(): Promise<{ min: number | null; max: number | null }> {
  const base = '/sys/devices/system/cpu';
  let mins: number[] = [];
  let maxes: number[] = [];
  try {
    const cpus = (await readdir(base)).filter((name) => /^cpu\d+$/.test(name));
    const read = async (cpu: string, file: string) => Number((await readFile(path.join(base, cpu, 'cpufreq', file), 'utf8').catch(() => '')).trim()) / 1000;
    mins = (await Promise.all(cpus.map((cpu) => read(cpu, 'cpuinfo_min_freq')))).filter((v) => v > 0);
    maxes = (await Promise.all(cpus.map((cpu) => read(cpu, 'cpuinfo_max_freq')))).filter((v) => v > 0);
  } catch {
    // no sysfs: fall through to os.cpus()
  }
  if (mins.length === 0 || maxes.length === 0) {
    const speeds = os.cpus().map((cpu) => cpu.speed).filter((s) => s > 0);
    if (speeds.length === 0) return { min: null, max: null };
    return { min: Math.min(...speeds), max: Math.max(...speeds) };
  }
  return { min: Math.min(...mins), max: Math.max(...maxes) };
}

/** statfs of the nearest existing ancestor (the cache folder may not exist yet). */
async function diskOf(dir: string): Promise<{ total_kB: number; available_kB: number }> {
  let current = path.resolve(dir);
  for (;;) {
    try {
      const fs = await statfs(current);
      return { total_kB: Math.floor((fs.blocks * fs.bsize) / 1024), available_kB: Math.floor((fs.bavail * fs.bsize) / 1024) };
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
}

/** Keeps a recent /about/usage/system answer; refreshed by a timer, never by a request. */
export class SystemSampler {
  private current: SystemUsage | undefined;
  private capabilityValue: Capability | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly intervalMs: number;

  constructor(private readonly options: SystemSamplerOptions) {
    this.intervalMs = options.intervalMs ?? 10_000;
  }

  async start(): Promise<void> {
    const cpu = await readCpuInfo();
    const meminfo = parseMemInfo(await readFile('/proc/meminfo', 'utf8').catch(() => ''));
    const frequencies = await coreFrequencies();
    this.capabilityValue = {
      cpu: {
        architecture: os.machine(),
        vendor: cpu.vendor,
        model: cpu.model,
        frequency: frequencies.max,
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

  private async sample(cpuInfo?: CpuInfo, frequencies?: { min: number | null; max: number | null }): Promise<void> {
    const started = new Date();
    const [cpu, meminfo, disk, freq] = await Promise.all([
      cpuInfo ?? readCpuInfo(),
      readFile('/proc/meminfo', 'utf8').catch(() => '').then(parseMemInfo),
      diskOf(this.options.diskDir),
      frequencies ?? coreFrequencies(),
    ]);
    const [load1, load5, load15] = os.loadavg() as [number, number, number];
    this.current = {
      cpu: { count: os.cpus().length, load_average: { load1, load5, load15 }, core_frequencies: freq },
      mem: { total_kB: meminfo.totalKb, available_kB: meminfo.availableKb },
      disk,
      period: { start_timestamp: started.toISOString(), duration_seconds: this.intervalMs / 1000 },
      properties: { cpu: { architecture: os.machine(), vendor: cpu.vendor, features: confidentialFeatures(cpu.flags) } },
      // No GPU passthrough in aleph-edge: an empty list is the truth, not a placeholder.
      gpu: { devices: [], available_devices: [] },
      active: true,
    };
  }
}
