// The index page in a real browser: Debian's chromium, headless, driven by
// playwright-core, against a node with two workers (the page's data crosses IPC). The
// page must render, run its checks to the end, draw the usage chart, list what runs
// and the certificates, and log no console error.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ALEPH_VM_VERSION } from '../../src/config/index.js';
import { StatusClient } from '../../src/status/index.js';
import { programHash, request, startTestNode, type TestNode } from '../helpers/node.js';
import { example } from '../helpers/paths.js';
import { DUAL_NAME, startProbeTargets, type ProbeTargets } from './local-servers.js';

const CHROMIUM = '/usr/bin/chromium';

describe('the index page in chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} missing (.ci/setup.d/nodeapi.sh installs it)` }, () => {
  let node: TestNode;
  let targets: ProbeTargets;
  let profile: string;
  let context: BrowserContext;
  let page: Page;
  const problems: string[] = [];
  const echo = programHash('echo');

  before(async () => {
    targets = await startProbeTargets();
    node = await startTestNode({
      programs: [{ name: 'echo', script: example('echo') }],
      domain: DUAL_NAME,
      workers: 2,
      extra: [
        '[node]',
        `node_hash = "${'c'.repeat(64)}"`,
        '[node.checks]',
        `ipv4_url = "${targets.v4}"`, `ipv6_url = "${targets.v6}"`, `dns_hostname = "${DUAL_NAME}"`, 'timeout = "2s"',
        '[node.diagnostic]',
        `internet_url = "${targets.v4}"`, `ipv4_target = "127.0.0.1:${targets.v4Port}"`,
        `ipv6_target = "[::1]:${new URL(targets.v6).port}"`, `dns_hostname = "${DUAL_NAME}"`,
      ].join('\n'),
    });
    // Something running, for the executions table.
    assert.equal((await request(node, { host: node.domain, path: `/vm/${echo}/` })).status, 200);
    profile = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-chromium-'));
    // A fresh profile (user-data-dir) per run.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync',
        // The test name resolves here, whatever chromium's own resolver thinks of /etc/hosts.
        `--host-resolver-rules=MAP ${DUAL_NAME} 127.0.0.1`,
      ],
      // Real TLS, from the node's internal CA, which this fresh profile does not trust.
      ignoreHTTPSErrors: true,
      viewport: { width: 1100, height: 900 },
    });
    // The page may ask GitHub only on the operator's click; nothing else leaves the node.
    await context.route((url) => url.hostname !== DUAL_NAME, (route) => {
      problems.push(`request outside the node: ${route.request().url()}`);
      return route.abort();
    });
    page = await context.newPage();
    page.on('console', (message) => { if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`); });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`));
  });

  after(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await node?.close();
    await targets?.close();
  });

  it('renders, completes its checks, charts CPU and memory, lists executions and certificates, with no console error', async () => {
    const response = await page.goto(`https://${DUAL_NAME}:${node.httpsPort}/`);
    assert.equal(response!.status(), 200);
    assert.match(String(response!.headers()['content-security-policy']), /script-src 'self'/);
    assert.match(await page.locator('h1').innerText(), new RegExp(`Aleph compute node ${DUAL_NAME.replace(/\./g, '\\.')}`));
    const header = await page.locator('header').innerText();
    assert.match(header, new RegExp(`aleph-edge test, up .*aleph-vm ${ALEPH_VM_VERSION.replace(/\./g, '\\.')}`));
    assert.match(header, /node hash c{64}/);

    // Every check leaves "pending" (the diagnostic program boots cold: up to 18 s).
    await page.waitForSelector('body[data-checks="done"]', { timeout: 60_000 });
    const states = await page.$$eval('.checks li', (items) => items.map((li) => [li.id, li.getAttribute('data-state'), li.querySelector('.detail')!.textContent]));
    const byId: Record<string, { state: string | null; detail: string | null }> = Object.fromEntries(states.map(([id, state, detail]) => [id, { state, detail }]));
    // What must pass here against local targets (the guest API and program IPv6 need more than this machine gives).
    assert.equal(byId['check-host-ipv4']!.state, 'ok', byId['check-host-ipv4']!.detail!);
    assert.equal(byId['check-host-ipv6']!.state, 'ok', byId['check-host-ipv6']!.detail!);
    assert.equal(byId['check-version']!.state, 'ok', byId['check-version']!.detail!);
    assert.match(byId['check-version']!.detail!, new RegExp(`the monitor reads version ${ALEPH_VM_VERSION.replace(/\./g, '\\.')}`));
    for (const [id, { state }] of Object.entries(byId)) assert.ok(state === 'ok' || state === 'fail', `${id} finished (${state})`);
    // The diagnostic check reports its failing checks by name when it fails, its checks when it passes.
    assert.match(byId['check-fastapi']!.detail!, byId['check-fastapi']!.state === 'ok' ? /^(all \d+ checks pass|required checks pass; not required, failing: )/ : /^failing: /);

    // Memory has a point from the first sample; CPU from the second (10 s later), drawn on a later refresh.
    await page.waitForSelector('#usage-chart circle[data-series="cpu"]', { timeout: 45_000 });
    const points = await page.$$eval('#usage-chart circle', (circles) => circles.map((c) => ({ series: c.getAttribute('data-series'), cy: Number(c.getAttribute('cy')) })));
    assert.ok(points.some((p) => p.series === 'memory'));
    assert.ok(points.every((p) => p.cy >= 10 && p.cy <= 196), 'every point lies inside the 0-100 % band');
    assert.match(await page.locator('#now-memory').innerText(), /^\d+\.\d%$/);

    const executions = await page.$$eval('#executions tbody tr', (rows) => rows.map((r) => r.textContent ?? ''));
    assert.ok(executions.some((row) => row.includes(echo.slice(0, 12)) && row.includes('ready') && row.includes('echo')), executions.join('\n'));
    const certificates = await page.$$eval('#certificates tbody tr', (rows) => rows.map((r) => r.textContent ?? ''));
    assert.ok(certificates.some((row) => row.includes(DUAL_NAME) && /\d+ days/.test(row)), certificates.join('\n'));

    if (process.env.ALEPH_EDGE_SCREENSHOT) await page.screenshot({ path: process.env.ALEPH_EDGE_SCREENSHOT, fullPage: true });
    assert.deepEqual(problems, []);
  });

  it('on the operator\'s click, compares the API release with aleph-vm\'s latest on GitHub', async () => {
    let latest = ALEPH_VM_VERSION;
    // GitHub's releases API as the browser sees it (this machine has no internet); registered last, so asked first.
    await context.route('https://api.github.com/repos/aleph-im/aleph-vm/releases/latest', (route) => route.fulfill({
      status: 200, contentType: 'application/json', headers: { 'access-control-allow-origin': '*' }, body: JSON.stringify({ tag_name: latest }),
    }));
    const out = page.locator('#latest-release');
    await page.click('#compare-latest');
    await out.filter({ hasText: /up to date|is out|could not/ }).waitFor();
    assert.equal(await out.innerText(), `aleph-vm ${ALEPH_VM_VERSION} is the latest release: up to date.`);
    latest = '99.0.0';
    await page.click('#compare-latest');
    await out.filter({ hasText: /is out|could not/ }).waitFor();
    assert.match(await out.innerText(), /^aleph-vm 99\.0\.0 is out/);
    assert.deepEqual(problems, []);
  });

  it('serves its script and style itself, and shows no secret', async () => {
    const script = await page.evaluate(async () => (await fetch('/about/page/node.js')).headers.get('content-type'));
    assert.match(String(script), /^text\/javascript/);
    const html = await page.content();
    assert.doesNotMatch(html, /https?:\/\/(?!api\.github\.com)[^"'\s]*\.(?:js|css)\b/, 'no external script or style');
    // node.node_hash, where the reference's /status/config shows NODE_HASH (read through a worker).
    const config = await page.evaluate(async () => (await (await fetch('/status/config')).json()) as { node_hash: string | null });
    assert.equal(config.node_hash, 'c'.repeat(64));
    const token = (await new StatusClient(node.socket).login()).token;
    assert.ok(!html.includes(token), 'the login secret is on the page');
    assert.deepEqual(problems, []);
  });
});
