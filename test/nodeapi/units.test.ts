import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/config/index.js';
import { CachedTask } from '../../src/nodeapi/cached.js';
import { executionsV1, executionsV2 } from '../../src/nodeapi/executions.js';
import { LoginSecret } from '../../src/nodeapi/index.js';
import { redactConfig } from '../../src/nodeapi/redact.js';
import { selfAddress } from '../../src/nodeapi/index.js';
import { confidentialFeatures, parseCpuInfo } from '../../src/nodeapi/system.js';
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
    last_request_at: null, boot_ms: null, requests: 0, in_flight: 0, memory_mib: 128, restarts: 0, last_error: null, guest_api: '',
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
    assert.deepEqual(selfAddress(['http 0.0.0.0:80', 'https 0.0.0.0:443']), { host: '127.0.0.1', port: 443 });
    assert.deepEqual(selfAddress(['https [::]:8443']), { host: '::1', port: 8443 });
    assert.deepEqual(selfAddress(['https 10.0.0.5:443']), { host: '10.0.0.5', port: 443 });
    assert.equal(selfAddress(['https fd:3']), undefined);
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
});
