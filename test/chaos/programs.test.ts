// Misbehaving programs next to a healthy one. Pass: the healthy program keeps
// answering 200 within bounded latency, the node's memory stays bounded, the
// misbehaving ones get the documented statuses (502/504), boot failures back off,
// and file descriptors return to their baseline once the bad clients are gone.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { example, fixtureProgram } from '../helpers/paths.js';
import { programHash } from '../helpers/node.js';
import { get, guestLinks, openFds, rssMiB, sleep, startCliNode, type CliNode } from './harness.js';

const DURATION_MS = Number(process.env.CHAOS_PROGRAMS_SECONDS ?? 8) * 1000;

describe('misbehaving programs', () => {
  let node: CliNode;
  let dir: string;
  const hashes = {
    counter: programHash('counter'),
    crashAtStart: programHash('crash-at-start'),
    crashOnRequest: programHash('crash-on-request'),
    neverReady: programHash('never-ready'),
    hang: programHash('hang'),
    flood: programHash('flood'),
  };
  const starts = (name: string) => path.join(dir, `${name}.starts`);

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-'));
    const bad = (name: string, behavior: string) => ({ name, script: fixtureProgram('chaos-bad.js'), env: { BEHAVIOR: behavior, STARTS_FILE: starts(name) } });
    node = await startCliNode({
      dir,
      programs: [
        { name: 'counter', script: example('counter') },
        { name: 'crash-at-start', script: fixtureProgram('sockets.js'), env: { EXIT_AT_START: '3', STARTS_FILE: starts('crash-at-start') } },
        bad('crash-on-request', 'crash-loop'),
        bad('never-ready', 'never-ready'),
        { ...bad('hang', 'hang'), requestTimeout: '1s' },
        bad('flood', 'flood'),
      ],
      orchestrator: ['boot_timeout = "1500ms"'],
      // Program output is logged at info: measure what a flood costs in log volume.
      env: { ALEPH_EDGE_LOG: 'info' },
    });
  });

  after(async () => {
    const code = await node.stop();
    await rm(dir, { recursive: true, force: true });
    assert.equal(code, 0);
  });

  it('the node keeps serving a healthy program with bounded memory', async () => {
    const pid = node.child.pid!;
    assert.equal((await get(node, `/vm/${hashes.counter}/state/increment`)).status, 200);
    await sleep(300);
    const baseRss = rssMiB(pid);
    const baseFds = openFds(pid);
    const baseLinks = guestLinks(node.socket).length;
    const baseLog = node.stderrBytes();
    let peakRss = baseRss;
    let halfRss = 0;
    const sampler = setInterval(() => { peakRss = Math.max(peakRss, rssMiB(pid)); }, 50);
    const half = setTimeout(() => { halfRss = rssMiB(pid); }, DURATION_MS / 2);
    const end = performance.now() + DURATION_MS;
    const tally = new Map<string, Map<string, number>>();
    const count = (kind: string, key: string) => {
      const m = tally.get(kind) ?? new Map<string, number>();
      m.set(key, (m.get(key) ?? 0) + 1);
      tally.set(kind, m);
    };
    const healthyLatencies: number[] = [];
    const loop = async (kind: string, fn: () => Promise<string>, pauseMs: number) => {
      while (performance.now() < end) {
        try {
          count(kind, await fn());
        } catch (error) {
          count(kind, (error as Error).message.slice(0, 40));
        }
        await sleep(pauseMs);
      }
    };
    // Hanging responses: clients that give up after 300 ms, and 20 that stay until the end.
    const held: Array<ReturnType<typeof https.get>> = [];
    const openHang = (abortMs: number | undefined) => new Promise<string>((resolve) => {
      const req = https.get({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, path: `/vm/${hashes.hang}/x`, headers: { host: node.domain }, agent: false }, (res) => {
        res.resume();
        resolve(`head ${res.statusCode}`);
        if (abortMs !== undefined) setTimeout(() => req.destroy(), abortMs);
      });
      req.on('error', () => resolve('error'));
      if (abortMs === undefined) held.push(req);
    });
    for (let i = 0; i < 20; i++) await openHang(undefined);
    await Promise.all([
      loop('healthy', async () => {
        const t0 = performance.now();
        const reply = await get(node, `/vm/${hashes.counter}/state/increment`, { timeoutMs: 5000 });
        healthyLatencies.push(performance.now() - t0);
        return String(reply.status);
      }, 10),
      loop('healthy-2', async () => String((await get(node, `/vm/${hashes.counter}/`, { timeoutMs: 5000 })).status), 10),
      loop('crash-at-start', async () => String((await get(node, `/vm/${hashes.crashAtStart}/`)).status), 50),
      loop('crash-on-request', async () => String((await get(node, `/vm/${hashes.crashOnRequest}/`)).status), 50),
      loop('never-ready', async () => String((await get(node, `/vm/${hashes.neverReady}/`)).status), 50),
      loop('hang', () => openHang(300), 50),
      loop('flood', async () => String((await get(node, `/vm/${hashes.flood}/`)).status), 50),
    ]);
    clearInterval(sampler);
    clearTimeout(half);
    const loadEndRss = rssMiB(pid);
    const fdsWithHeld = openFds(pid);
    for (const req of held) req.destroy();
    await sleep(1500);
    const endFds = openFds(pid);
    // Each running execution's guest API session holds two fds in the primary (its unix
    // listener and the TCP guest-link); programs started during the load legitimately keep theirs.
    const sessionFds = 2 * Math.max(0, guestLinks(node.socket).length - baseLinks);
    const endRss = rssMiB(pid);
    const logRate = (node.stderrBytes() - baseLog) / (DURATION_MS / 1000) / 1024;
    const bootCount = async (name: string) => (await readFile(starts(name), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).length;
    const boots = Object.fromEntries(await Promise.all(['crash-at-start', 'crash-on-request', 'never-ready', 'hang', 'flood'].map(async (n) => [n, await bootCount(n)] as const)));
    healthyLatencies.sort((a, b) => a - b);
    const summary = Object.fromEntries([...tally].map(([k, m]) => [k, Object.fromEntries(m)]));
    process.stdout.write(`# programs (${DURATION_MS / 1000} s): ${JSON.stringify(summary)}\n` +
      `# programs: healthy p50 ${healthyLatencies[Math.floor(healthyLatencies.length / 2)]!.toFixed(0)} ms, max ${healthyLatencies.at(-1)!.toFixed(0)} ms; ` +
      `boots ${JSON.stringify(boots)}; node RSS ${baseRss.toFixed(0)} -> half-time ${halfRss.toFixed(0)} -> end of load ${loadEndRss.toFixed(0)} (peak ${peakRss.toFixed(0)}) -> ${endRss.toFixed(0)} MiB; ` +
      `fds ${baseFds} -> ${fdsWithHeld} (20 hanging responses held) -> ${endFds}; log volume ${logRate.toFixed(0)} KiB/s while flooding\n`);

    assert.deepEqual(Object.keys(summary.healthy!), ['200']);
    assert.deepEqual(Object.keys(summary['healthy-2']!), ['200']);
    // Latencies are printed above, not asserted: every healthy request answered 200.
    assert.deepEqual(Object.keys(summary['crash-at-start']!), ['502']);
    assert.ok(boots['crash-at-start']! <= 5, `crash-at-start booted ${boots['crash-at-start']} times (backoff)`);
    assert.ok(Object.keys(summary['crash-on-request']!).every((k) => k === '502' || k === '200'), JSON.stringify(summary['crash-on-request']));
    // Dies on every request: backed off from its second death (1 s, 2 s, 4 s), not rebooted per request.
    assert.ok(boots['crash-on-request']! <= 7, `crash-on-request booted ${boots['crash-on-request']} times (crash-loop backoff)`);
    assert.deepEqual(Object.keys(summary['never-ready']!), ['502']);
    assert.ok(boots['never-ready']! <= 4, `never-ready booted ${boots['never-ready']} times`);
    assert.deepEqual(Object.keys(summary.hang!), ['head 200']);
    assert.deepEqual(Object.keys(summary.flood!), ['200']);
    // Bounded: whatever the first half costs (heap growth, TLS contexts), the second half adds little.
    // Node 24's V8 leaves dead socket buffers for an incremental mark-compact where Node 20
    // scavenged them (docs/security.md, "Proxy memory"): the peak measured 140-166 MiB here
    // on Node 24 against ~75 on Node 20. Boundedness itself is the second-half check below.
    assert.ok(peakRss - baseRss < 200, `RSS grew ${(peakRss - baseRss).toFixed(0)} MiB`);
    // On Node 24 up to ~64 MiB of dead socket buffers can wait for an incremental
    // mark-compact (docs/security.md, "Proxy memory"), so RSS swings by that much without
    // any retention; a leak at this request rate outgrows the swing. Measured second
    // halves: 27-53 MiB on Node 24 (under the suite's load), under 40 on Node 20.
    assert.ok(loadEndRss - halfRss < 80, `RSS grew ${(loadEndRss - halfRss).toFixed(0)} MiB in the second half`);
    assert.ok(endFds <= baseFds + 6 + sessionFds, `fds ${baseFds} -> ${endFds} (${sessionFds} for guest API sessions of programs started meanwhile)`);
    assert.ok(logRate < 1024, `log volume ${logRate.toFixed(0)} KiB/s`);
    assert.equal(node.child.exitCode, null);
  });
});
