import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ALEPH_VM_VERSION, parseConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/config/index.js';
import { CachedTask } from '../../src/nodeapi/cached.js';
import { executionsV1, executionsV2 } from '../../src/nodeapi/executions.js';
import { LoginSecret } from '../../src/nodeapi/index.js';
import { redactConfig } from '../../src/nodeapi/redact.js';
import { selfAddress, type NodeListener } from '../../src/nodeapi/index.js';
import { confidentialFeatures, coreFrequencies, parseCpuInfo, parseCpuTimes, SystemSampler } from '../../src/nodeapi/system.js';
import { psutilUsage } from './shapes.js';
import { MachineUsage, violations } from './reference-models.js';
import { restartOnlyChanges } from '../../src/app/reload-diff.js';
import { until } from '../helpers/node.js';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { compareVersions, parseVersion } from '../../src/nodeapi/version.js';
import type { ExecutionInfo } from '../../src/orchestrator/index.js';

describe('login secret', () => {
  it('is made once (0600, no temp file left), then read back; compared in constant time', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-secret-'));
    try {
      const state = path.join(dir, 'state');
      const first = await LoginSecret.load(state);
      assert.equal((await stat(first.file)).mode & 0o777, 0o600);
      assert.deepEqual(await readdir(state), ['login-token']);
      const second = await LoginSecret.load(state);
      assert.equal(second.reveal(), first.reveal());
      assert.ok(first.matches(first.reveal()));
      assert.ok(!first.matches(''));
      assert.ok(!first.matches(first.reveal().slice(1)));
      assert.ok(!first.matches(first.reveal() + '0'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a malformed secret file instead of accepting it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-secret-'));
    try {
      await writeFile(path.join(dir, 'login-token'), 'short\n');
      await assert.rejects(LoginSecret.load(dir), /malformed/);
      assert.equal(await readFile(path.join(dir, 'login-token'), 'utf8'), 'short\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('check cache', () => {
  it('runs one computation at a time and reuses its answer within the ttl', async () => {
    let runs = 0;
    let release!: () => void;
    const task = new CachedTask(async () => {
      runs++;
      await new Promise<void>((resolve) => (release = resolve));
      return runs;
    }, 60_000);
    const all = Promise.all(Array.from({ length: 50 }, () => task.get()));
    await new Promise((resolve) => setImmediate(resolve));
    release();
    assert.deepEqual(new Set(await all), new Set([1]));
    assert.equal(await task.get(), 1);
    assert.equal(runs, 1);
  });

  it('a failed run is not cached', async () => {
    let runs = 0;
    const task = new CachedTask(async () => {
      runs++;
      if (runs === 1) throw new Error('first fails');
      return runs;
    }, 60_000);
    await assert.rejects(task.get(), /first fails/);
    assert.equal(await task.get(), 2);
  });
});

describe('versions', () => {
  it('compares numerically', () => {
    assert.deepEqual(parseVersion('1.2.3'), [1, 2, 3]);
    assert.deepEqual(parseVersion('v0.4.0-rc1'), [0, 4, 0]);
    assert.equal(parseVersion('test'), undefined);
    assert.equal(parseVersion('<script>'), undefined);
    assert.ok(compareVersions([0, 10], [0, 9, 9]) > 0);
    assert.equal(compareVersions([1, 0], [1, 0, 0]), 0);
    assert.ok(compareVersions([0, 1, 0], [1]) < 0);
  });
});

describe('redaction', () => {
  it('hides program environments and secret-named keys, keeps the rest', () => {
    const out = redactConfig({
      tls: { eab: { kid: 'k', hmacKey: 'HMAC' }, files: [{ key: '/etc/k.pem' }] },
      programs: { local: [{ env: { A: 'x' }, name: 'n' }] },
      node: { apiToken: 'T', empty: '' },
      programs2: { alephApi: 'https://user:pa55@api.example/x', email: 'ops@example.org' },
    }) as any;
    assert.equal(out.programs2.alephApi, 'https://user:[redacted]@api.example/x');
    assert.equal(out.programs2.email, 'ops@example.org');
    assert.equal(out.tls.eab.hmacKey, '[redacted]');
    assert.equal(out.tls.eab.kid, 'k');
    assert.equal(out.tls.files[0].key, '/etc/k.pem');
    assert.deepEqual(out.programs.local[0].env, { A: '[redacted]' });
    assert.equal(out.node.apiToken, '[redacted]');
    assert.ok(!JSON.stringify(out).includes('HMAC') && !JSON.stringify(out).includes('pa55'));
  });
});

describe('executions lists', () => {
  const info = (hash: string, state: ExecutionInfo['state'], endpoint: string): ExecutionInfo => ({
    hash, name: '', state, driver: 'qemu', endpoint, pid: 1, started_at: '2026-01-01T00:00:00.000Z', ready_at: state === 'ready' ? '2026-01-01T00:00:01.000Z' : null,
    last_request_at: null, boot_ms: null, requests: 0, in_flight: 0, memory_mib: 128, vcpus: 1, restarts: 0, last_error: null, guest_api: '',
  });
  it('v1 lists running ones only; networking from the VM\'s own network, null without one', () => {
    const tap = {
      ...info('a'.repeat(64), 'ready', '172.16.0.6:8080'),
      network: { ipv4Network: '172.16.0.4/30', ipv4: '172.16.0.6', ipv6Network: '2001:db8:1:2:1:aaaa:aaaa:aaa0/124', ipv6: '2001:db8:1:2:1:aaaa:aaaa:aaa1', hostIpv4: '203.0.113.7', mappedPorts: { '22': { host: 24000, tcp: true, udp: false } } },
    };
    const list = [tap, info('b'.repeat(64), 'starting', '127.0.0.1:4000'), info('c'.repeat(64), 'ready', '127.0.0.1:4001')];
    const v1 = executionsV1(list);
    assert.deepEqual(Object.keys(v1), ['a'.repeat(64), 'c'.repeat(64)]);
    assert.deepEqual(v1['a'.repeat(64)]!.networking, { ipv4: '172.16.0.4/30', ipv6: '2001:db8:1:2:1:aaaa:aaaa:aaa0/124' });
    assert.deepEqual(v1['c'.repeat(64)]!.networking, { ipv4: null, ipv6: null });
    const v2 = executionsV2(list);
    assert.deepEqual(v2['a'.repeat(64)]!.networking, {
      ipv4_network: '172.16.0.4/30', host_ipv4: '203.0.113.7', ipv6_network: '2001:db8:1:2:1:aaaa:aaaa:aaa0/124',
      ipv6_ip: '2001:db8:1:2:1:aaaa:aaaa:aaa1', ipv4_ip: '172.16.0.6', mapped_ports: { '22': { host: 24000, tcp: true, udp: false } },
    });
    assert.equal(v2['c'.repeat(64)]!.networking.ipv4_ip, null);
    assert.equal(v2['b'.repeat(64)]!.running, false);
    assert.equal(v2['b'.repeat(64)]!.status.started_at, null);
    assert.equal(v2['a'.repeat(64)]!.status.started_at, '2026-01-01T00:00:01.000Z');
  });
});

describe('host facts', () => {
  it('reads vendor, model and the confidential-computing flags from /proc/cpuinfo', () => {
    const info = parseCpuInfo('processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7543\nflags\t\t: fpu sev sev_es sme\n\nprocessor\t: 1\nvendor_id\t: Other\n');
    assert.deepEqual(info, { vendor: 'AuthenticAMD', model: 'AMD EPYC 7543', flags: ['fpu', 'sev', 'sev_es', 'sme'] });
    assert.deepEqual(confidentialFeatures(info.flags), ['sev', 'sev_es']);
    assert.deepEqual(parseCpuInfo(''), { vendor: null, model: null, flags: [] });
  });

  it('finds its own HTTPS listener, wildcard binds through loopback', () => {
    assert.deepEqual(selfAddress([{ protocol: 'http', address: '0.0.0.0', port: 80 }, { protocol: 'https', address: '0.0.0.0', port: 443 }]), { host: '127.0.0.1', port: 443 });
    assert.deepEqual(selfAddress([{ protocol: 'https', address: '::', port: 8443 }]), { host: '::1', port: 8443 });
    assert.deepEqual(selfAddress([{ protocol: 'https', address: '10.0.0.5', port: 443, fd: 3 } as NodeListener]), { host: '10.0.0.5', port: 443 });
    // An inherited socket that is not TCP names no address.
    assert.equal(selfAddress([{ protocol: 'https' }]), undefined);
  });
});

describe('[node] config', () => {
  it('reads every key; bad values are file:line errors', () => {
    const settings = parseConfig(`[server]\ndomain = "n.example"\n[tls]\nemail = "a@b.c"\n[node]\ncheck_program = "${'A'.repeat(64)}"\nstate_dir = "state"\n[node.checks]\ndns_hostname = "example.org"\ntimeout = "1s"\n[node.diagnostic]\nipv6_target = "[::1]:53"\n`, '/etc/x/c.toml');
    assert.equal(settings.node!.checkProgram, 'a'.repeat(64));
    assert.equal(settings.node!.stateDir, '/etc/x/state');
    assert.equal(settings.node!.checks.timeoutMs, 1000);
    assert.equal(settings.node!.diagnostic.ipv6Target, '[::1]:53');
    assert.throws(() => parseConfig(`[server]\ndomain = "n.example"\n[tls]\nemail = "a@b.c"\n[node]\ncheck_program = "xyz"\n[node.diagnostic]\nipv4_target = "nope"\n`, '/c.toml'), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.format(), /c\.toml:6:\d+: node\.check_program/);
      assert.match(error.format(), /c\.toml:8:\d+: node\.diagnostic\.ipv4_target/);
      return true;
    });
  });

  it('aleph_vm_version and node_hash: defaults, values, and errors', () => {
    const base = '[server]\ndomain = "n.example"\n[tls]\nemail = "a@b.c"\n[node]\n';
    const defaults = parseConfig(base, '/c.toml').node!;
    assert.equal(defaults.alephVmVersion, ALEPH_VM_VERSION);
    assert.equal(defaults.nodeHash, null);
    const set = parseConfig(`${base}aleph_vm_version = "1.2.0-rc3"\nnode_hash = "${'B'.repeat(64)}"\n`, '/c.toml').node!;
    assert.deepEqual([set.alephVmVersion, set.nodeHash], ['1.2.0-rc3', 'b'.repeat(64)]);
    assert.throws(() => parseConfig(`${base}aleph_vm_version = "1.0 (aleph-edge)"\nnode_hash = "0x12"\n`, '/c.toml'), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.format(), /c\.toml:6:\d+: node\.aleph_vm_version.*release name/);
      assert.match(error.format(), /c\.toml:7:\d+: node\.node_hash.*64 hex/);
      return true;
    });
  });
});

describe('core frequencies, as psutil computes them', () => {
  const tree = async (files: Record<string, string>) => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-cpufreq-'));
    for (const [name, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(root, name)), { recursive: true });
      await writeFile(path.join(root, name), text);
    }
    return root;
  };
  const cpuinfo = (mhz: number[]) => mhz.map((v, i) => `processor\t: ${i}\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: ${v.toFixed(3)}\nflags\t\t: fpu vme\n\n`).join('');

  it('without cpufreq: min and max are the mean current speed of /proc/cpuinfo, the same numbers psutil gives', async () => {
    const root = await tree({ 'proc/cpuinfo': cpuinfo([2000.5, 3000.25, 1200]), 'proc/meminfo': await readFile('/proc/meminfo', 'utf8') });
    try {
      const ours = await coreFrequencies(root);
      assert.deepEqual(ours, { min: (2000.5 + 3000.25 + 1200) / 3, max: (2000.5 + 3000.25 + 1200) / 3 });
      // psutil reads sysfs at a fixed path: it takes the /proc/cpuinfo route only on a host without cpufreq.
      if (!existsSync('/sys/devices/system/cpu/cpufreq/policy0') && !existsSync('/sys/devices/system/cpu/cpu0/cpufreq')) {
        assert.deepEqual(ours, (await psutilUsage(path.join(root, 'proc'))).frequencies);
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('with cpufreq policies: the mean of scaling_min/max_freq; a 0 limit falls back to the current speed', async () => {
    const root = await tree({
      'proc/cpuinfo': cpuinfo([1800, 2200]),
      'sys/devices/system/cpu/cpufreq/policy0/scaling_min_freq': '800000\n',
      'sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq': '3600000\n',
      'sys/devices/system/cpu/cpufreq/policy1/scaling_min_freq': '1200000\n',
      'sys/devices/system/cpu/cpufreq/policy1/scaling_max_freq': '4000000\n',
      'sys/devices/system/cpu/cpufreq/policy10/scaling_min_freq': '0\n',
      'sys/devices/system/cpu/cpufreq/policy10/scaling_max_freq': '0\n',
      'sys/devices/system/cpu/cpufreq/policy10/scaling_cur_freq': '2700000\n',
    });
    try {
      // Three policies, two cpuinfo lines: psutil reads scaling_cur_freq (no current is needed here).
      assert.deepEqual(await coreFrequencies(root), { min: (800 + 1200 + 0) / 3, max: (3600 + 4000 + 0) / 3 });
      await rm(path.join(root, 'sys/devices/system/cpu/cpufreq/policy10'), { recursive: true });
      assert.deepEqual(await coreFrequencies(root), { min: 1000, max: 3800 });
      for (const name of ['policy0', 'policy1']) {
        await writeFile(path.join(root, 'sys/devices/system/cpu/cpufreq', name, 'scaling_min_freq'), '0\n');
      }
      // min averages to 0: `min or current`, the current being /proc/cpuinfo's (one line per policy).
      assert.deepEqual(await coreFrequencies(root), { min: 2000, max: 3800 });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('older kernels: per-cpu cpufreq folders; nothing known at all is 0, never null', async () => {
    const root = await tree({
      'proc/cpuinfo': 'processor\t: 0\n',
      'sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq': '1000000',
      'sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq': '2000000',
      'sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq': '1500000',
      'sys/devices/system/cpu/cpu1/online': '1',
    });
    try {
      assert.deepEqual(await coreFrequencies(root), { min: 1000, max: 2000 });
      await rm(path.join(root, 'sys'), { recursive: true });
      assert.deepEqual(await coreFrequencies(root), { min: 0, max: 0 });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('usage history', () => {
  it('reads busy and total jiffies from /proc/stat (iowait counts as idle)', () => {
    assert.deepEqual(parseCpuTimes('cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n'), { busy: 160, total: 1000 });
    assert.equal(parseCpuTimes('intr 1 2 3\n'), undefined);
  });

  it('keeps a bounded window of samples, oldest first; CPU use needs the interval before it', async () => {
    const sampler = new SystemSampler({ diskDir: os.tmpdir(), intervalMs: 20, historyMs: 200 });
    await sampler.start();
    try {
      const first = sampler.history().samples[0]!;
      assert.equal(first.cpu_percent, null);
      // Wait (for a condition) until the window is full and has moved past the first sample.
      await until(() => sampler.history().samples[0]!.timestamp !== first.timestamp, 30_000, 'the window to move');
      const { interval_seconds, samples } = sampler.history();
      assert.equal(interval_seconds, 0.02);
      assert.equal(samples.length, 10);
      const times = samples.map((s) => Date.parse(s.timestamp));
      assert.deepEqual(times, [...times].sort((a, b) => a - b));
      assert.ok(samples.every((s) => s.cpu_percent === null || (s.cpu_percent >= 0 && s.cpu_percent <= 100)));
      assert.ok(samples.some((s) => s.cpu_percent !== null));
      assert.ok(samples.every((s) => s.mem_available_kB <= s.mem_total_kB));
    } finally {
      sampler.stop();
    }
  });
});

describe('the reference models checker (what pydantic would refuse, it refuses)', () => {
  const good = {
    cpu: { count: 2, load_average: { load1: 0.5, load5: 1, load15: 0.25 }, core_frequencies: { min: 2445.406, max: 2445.406 } },
    mem: { total_kB: 25276990, available_kB: 21144428 },
    disk: { total_kB: 270553174, available_kB: 84077715 },
    period: { start_timestamp: '2026-12-01T11:12:40.142Z', duration_seconds: 10 },
    properties: { cpu: { architecture: 'x86_64', vendor: 'AuthenticAMD', features: [] } },
    gpu: { devices: [], available_devices: [] },
    active: true,
  };
  const edit = (change: (u: any) => void) => { const copy = structuredClone(good); change(copy); return violations(MachineUsage, copy); };

  it('accepts the reference shape and refuses each broken field', () => {
    assert.deepEqual(violations(MachineUsage, good), []);
    assert.match(edit((u) => { u.cpu.core_frequencies.min = null; }).join(), /core_frequencies\.min: float expected/);
    assert.match(edit((u) => { delete u.cpu.core_frequencies.max; }).join(), /core_frequencies\.max: field required/);
    assert.match(edit((u) => { u.properties.cpu.architecture = 'aarch64'; }).join(), /architecture: one of/);
    assert.match(edit((u) => { u.properties.cpu.model = 'EPYC'; }).join(), /properties\.cpu\.model: extra field not permitted/);
    assert.match(edit((u) => { u.mem.total_kB = 1.5; }).join(), /mem\.total_kB: int expected/);
    assert.match(edit((u) => { u.period.start_timestamp = 'yesterday'; }).join(), /start_timestamp: datetime expected/);
    assert.match(edit((u) => { u.gpu.devices = [{ vendor: 'NVIDIA' }]; }).join(), /devices\[0\]\.device_name: field required/);
    assert.deepEqual(edit((u) => { u.gpu.devices = null; u.properties.cpu.vendor = null; }), []);
  });
});

describe('node.aleph_vm_version on reload', () => {
  it('is reported as needing a restart (the Server header is fixed at start); absent and default are the same', () => {
    const base = '[server]\ndomain = "n.example"\n[tls]\nemail = "a@b.c"\n';
    const without = parseConfig(base, '/c.toml');
    const same = parseConfig(`${base}[node]\naleph_vm_version = "${ALEPH_VM_VERSION}"\n`, '/c.toml');
    const changed = parseConfig(`${base}[node]\naleph_vm_version = "1.15.0"\n`, '/c.toml');
    assert.deepEqual(restartOnlyChanges(without, same), []);
    assert.deepEqual(restartOnlyChanges(without, changed), ['node.aleph_vm_version']);
  });
});
