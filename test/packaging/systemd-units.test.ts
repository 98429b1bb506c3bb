// The shipped systemd units: `systemd-analyze verify` accepts them (alone and with
// each drop-in), and they agree with the production example config.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/index.js';
import { CLI, ROOT } from '../helpers/paths.js';
import { ASGI_SHUTDOWN_S, stopGrace } from '../../src/drivers/index.js';

const run = promisify(execFile);
const UNITS = path.join(ROOT, 'systemd');
const INSTALLED_BIN = '/usr/local/bin/aleph-edge';

function hasSystemdAnalyze(): boolean {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** key -> every value, from one unit file (comments and sections ignored). */
function directives(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

function seconds(value: string): number {
  const m = /^(\d+)(ms|s|min|m)?$/.exec(value);
  assert.ok(m, `duration ${value}`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n / 1000 : m[2] === 'min' || m[2] === 'm' ? n * 60 : n;
}

describe('systemd units', () => {
  let service: Map<string, string[]>;
  let https: Map<string, string[]>;
  let httpSocket: Map<string, string[]>;

  before(async () => {
    service = directives(await readFile(path.join(UNITS, 'aleph-edge.service'), 'utf8'));
    https = directives(await readFile(path.join(UNITS, 'aleph-edge.socket'), 'utf8'));
    httpSocket = directives(await readFile(path.join(UNITS, 'aleph-edge-http.socket'), 'utf8'));
  });

  it('socket units pass :443 as "https" and :80 as "http", IPv4 and IPv6, to aleph-edge.service', () => {
    assert.deepEqual(https.get('ListenStream'), ['443']);
    assert.deepEqual(https.get('FileDescriptorName'), ['https']);
    assert.deepEqual(httpSocket.get('ListenStream'), ['80']);
    assert.deepEqual(httpSocket.get('FileDescriptorName'), ['http']);
    for (const socket of [https, httpSocket]) {
      assert.deepEqual(socket.get('BindIPv6Only'), ['both']);
      assert.deepEqual(socket.get('Service'), ['aleph-edge.service']);
    }
  });

  it('the service agrees with conf/aleph-edge.toml: paths, drain deadline, reload signal', async () => {
    const settings = await loadConfig(path.join(ROOT, 'conf/aleph-edge.toml'));
    const runtime = service.get('RuntimeDirectory')![0]!;
    assert.equal(path.dirname(settings.server.statusSocket), `/run/${runtime}`);
    const state = service.get('StateDirectory')![0]!;
    assert.ok(settings.tls.storage.startsWith(`/var/lib/${state}/`), settings.tls.storage);
    const stop = seconds(service.get('TimeoutStopSec')![0]!);
    // Programs stop after the drain; an ASGI program's grace covers its own shutdown.
    const needed = (settings.server.drainTimeoutMs + stopGrace(settings.orchestrator.stopGraceMs, ASGI_SHUTDOWN_S)) / 1000;
    assert.ok(stop >= needed + 5, `TimeoutStopSec ${stop}s < drain ${needed}s + margin`);
    assert.deepEqual(service.get('ExecReload'), ['/bin/kill -HUP $MAINPID']);
    assert.deepEqual(service.get('Restart'), ['on-failure']);
    assert.deepEqual(service.get('KillMode'), ['mixed']);
    assert.ok(service.get('ExecStart')![0]!.startsWith(`${INSTALLED_BIN} run --config /etc/aleph-edge/aleph-edge.toml`));
  });

  it('is hardened: dedicated user, no capabilities, read-only system, restricted address families', () => {
    const one = (key: string) => service.get(key)?.at(-1);
    assert.equal(one('User'), 'aleph-edge');
    assert.equal(one('CapabilityBoundingSet'), '');
    assert.equal(one('AmbientCapabilities'), '');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('ProtectHome'), 'yes');
    assert.equal(one('PrivateTmp'), 'yes');
    assert.equal(one('RestrictAddressFamilies'), 'AF_UNIX AF_INET AF_INET6 AF_NETLINK');
    for (const dir of ['/var/lib/aleph-edge', '/run/aleph-edge']) assert.match(one('ReadWritePaths')!, new RegExp(dir));
  });

  describe('systemd-analyze verify', { skip: hasSystemdAnalyze() ? false : 'systemd-analyze not installed (.ci/setup.d/systemd.sh)' }, () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-units-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    /** Copies the units into a fresh folder (ExecStart pointing at this checkout's CLI), plus drop-ins. */
    async function stage(name: string, dropIns: string[]): Promise<string> {
      const target = path.join(dir, name);
      await mkdir(target, { recursive: true });
      const bin = path.join(target, 'aleph-edge');
      await writeFile(bin, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} "$@"\n`);
      await chmod(bin, 0o755);
      for (const file of await readdir(UNITS)) {
        if (!/\.(service|socket)$/.test(file)) continue;
        const text = await readFile(path.join(UNITS, file), 'utf8');
        await writeFile(path.join(target, file), text.replaceAll(INSTALLED_BIN, bin));
      }
      if (dropIns.length > 0) {
        await mkdir(path.join(target, 'aleph-edge.service.d'));
        for (const file of dropIns) await copyFile(path.join(UNITS, 'drop-ins', file), path.join(target, 'aleph-edge.service.d', file));
      }
      return target;
    }

    for (const dropIns of [[], ['no-socket-activation.conf'], ['vm-driver.conf'], ['vm-driver.conf', 'firecracker-jailer.conf']]) {
      it(`accepts the units${dropIns.length ? ` with drop-ins/${dropIns.join(', ')}` : ''} without a warning`, async () => {
        const target = await stage(dropIns.join('+') || 'plain', dropIns);
        const { stdout, stderr } = await run('systemd-analyze', ['verify', '--man=no', 'aleph-edge.service', 'aleph-edge.socket', 'aleph-edge-http.socket'].map((f) => (f.includes('.') && !f.startsWith('-') ? path.join(target, f) : f)), {
          cwd: target,
          env: { ...process.env, SYSTEMD_LOG_LEVEL: 'notice' },
        });
        // Unknown keys, bad values and missing executables are reported on stderr (exit 0 for some).
        const complaints = (stdout + stderr).split('\n').filter((l) => l.includes(target) || /aleph-edge/.test(l));
        assert.deepEqual(complaints, []);
      });
    }

    it('exposure score from systemd-analyze security is low', async (t) => {
      const target = await stage('security', []);
      let out: string;
      try {
        out = (await run('systemd-analyze', ['security', '--offline=true', path.join(target, 'aleph-edge.service')], { cwd: target })).stdout;
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string };
        if (/offline|unrecognized|Unknown/i.test(e.stderr ?? '')) return t.skip('systemd-analyze security --offline unsupported');
        out = e.stdout ?? '';
      }
      const score = Number(/Overall exposure level for aleph-edge\.service: ([\d.]+)/.exec(out)?.[1]);
      process.stdout.write(`# systemd-analyze security exposure: ${score}\n`);
      assert.ok(score <= 2.5, `exposure ${score}`);
    });
  });
});
