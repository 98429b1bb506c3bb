import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DIAGNOSTIC_PROGRAM_HASH } from '../../src/config/index.js';
import { StatusClient } from '../../src/status/index.js';
import { programHash, request, startTestNode, type Reply, type TestNode } from '../helpers/node.js';
import { example } from '../helpers/paths.js';
import { DUAL_NAME, startProbeTargets, type ProbeTargets } from './local-servers.js';
import { CAPABILITY, EXECUTION_V1, EXECUTION_V2, HOST_CHECK, USAGE_SYSTEM, assertShape } from './shapes.js';

const PROGRAM_SECRET = 'program-secret-value-0123';

describe('node API pages, as the network\'s monitors call them', () => {
  let node: TestNode;
  let targets: ProbeTargets;
  let token: string;
  const echo = programHash('echo');
  const bodies: string[] = [];
  const get = async (p: string, headers?: Record<string, string>, method = 'GET'): Promise<Reply> => {
    const reply = await request(node, { host: node.domain, path: p, headers, method });
    bodies.push(reply.body, JSON.stringify(reply.headers));
    return reply;
  };

  before(async () => {
    targets = await startProbeTargets();
    node = await startTestNode({
      programs: [{ name: 'echo', script: example('echo'), env: { API_TOKEN: PROGRAM_SECRET } }],
      // A name with both an IPv4 and an IPv6 address, so the host check's domain probes pass.
      domain: DUAL_NAME,
      extra: [
        '[node.checks]',
        `ipv4_url = "${targets.v4}"`,
        `ipv6_url = "${targets.v6}"`,
        `dns_hostname = "${DUAL_NAME}"`,
        'timeout = "2s"',
      ].join('\n'),
    });
    token = (await new StatusClient(node.socket).login()).token;
  });

  after(async () => {
    await node?.close();
    await targets?.close();
  });

  it('GET / is an HTML page with the version, uptime, programs and how to reach them', async () => {
    const reply = await get('/');
    assert.equal(reply.status, 200);
    assert.equal(reply.headers.server, 'aleph-edge/test');
    assert.equal(reply.headers['access-control-allow-origin'], '*');
    assert.match(String(reply.headers['content-type']), /^text\/html/);
    assert.match(reply.body, /aleph-edge <strong>test<\/strong>, up \d+m \d+s/);
    assert.match(reply.body, /<strong>\d+<\/strong> running, using <strong>\d+<\/strong> MiB of a 8192 MiB budget/);
    // The listener is not on 443: the example URLs carry the port.
    assert.ok(reply.body.includes(`https://${DUAL_NAME}:${node.httpsPort}/vm/`));
    for (const link of ['/about/usage/system', '/about/capability', '/about/executions/list', '/v2/about/executions/list', '/status/check/fastapi', '/status/check/host', '/status/config']) {
      assert.ok(reply.body.includes(`href="${link}"`), link);
    }
  });

  it('the plain-HTTP listener answers with the Server header too', async () => {
    const reply = await new Promise<{ status: number; server: string | undefined }>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: node.httpPort, path: '/', headers: { host: node.domain }, agent: false }, (res) => {
        res.resume();
        resolve({ status: res.statusCode!, server: String(res.headers.server) });
      }).on('error', reject);
    });
    assert.deepEqual(reply, { status: 301, server: 'aleph-edge/test' });
  });

  it('/about/usage/system has the reference shape, answered from the background sample', async () => {
    const first = await get('/about/usage/system');
    assert.equal(first.status, 200);
    assert.equal(first.headers['access-control-allow-origin'], '*');
    const usage = JSON.parse(first.body);
    assertShape(usage, USAGE_SYSTEM);
    const meminfo = await readFile('/proc/meminfo', 'utf8');
    assert.equal(usage.mem.total_kB, Number(/MemTotal:\s+(\d+)/.exec(meminfo)![1]));
    assert.ok(usage.disk.total_kB > 0 && usage.disk.available_kB <= usage.disk.total_kB);
    assert.ok(usage.properties.cpu.features.every((f: string) => ['sev', 'sev_es', 'sev_snp'].includes(f)));
    const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
    for (const flag of ['sev', 'sev_es', 'sev_snp']) {
      assert.equal(usage.properties.cpu.features.includes(flag), new RegExp(`^flags\\s*:.*\\b${flag}\\b`, 'm').test(cpuinfo), flag);
    }
    // Not measured per request: a second answer is the same sample.
    const second = JSON.parse((await get('/about/usage/system')).body);
    assert.equal(second.period.start_timestamp, usage.period.start_timestamp);
  });

  it('/about/capability has the reference shape with nulls for what the host does not tell', async () => {
    const reply = await get('/about/capability');
    assert.equal(reply.status, 200);
    const capability = JSON.parse(reply.body);
    assertShape(capability, CAPABILITY);
    const meminfo = await readFile('/proc/meminfo', 'utf8');
    assert.equal(capability.memory.size, Number(/MemTotal:\s+(\d+)/.exec(meminfo)![1]) * 1024);
    assert.equal(capability.memory.type, null);
    assert.equal(capability.memory.clock, null);
  });

  it('lists running programs keyed by hash, in both versions', async () => {
    assert.equal((await get(`/vm/${echo}/`)).status, 200);
    const v1 = JSON.parse((await get('/about/executions/list')).body);
    assert.deepEqual(Object.keys(v1), [echo]);
    assertShape(v1[echo], EXECUTION_V1);
    assert.equal(v1[echo].vm_type, 'microvm');
    const reply = await get('/v2/about/executions/list');
    assert.equal(reply.headers['access-control-allow-origin'], '*');
    const v2 = JSON.parse(reply.body);
    assertShape(v2[echo], EXECUTION_V2);
    assert.equal(v2[echo].running, true);
    assert.equal(v2[echo].vm_type, 'microvm');
    assert.notEqual(v2[echo].status.started_at, null);
    assert.equal(v2[echo].status.stopped_at, null);
  });

  it('login: no or wrong token is 401 {"success": false}; the right one sets a strict cookie', async () => {
    for (const p of ['/about/login', '/about/login?token=', `/about/login?token=${'0'.repeat(64)}`, `/about/login?token=${token.slice(0, 63)}`]) {
      const reply = await get(p);
      assert.equal(reply.status, 401, p);
      assert.deepEqual(JSON.parse(reply.body), { success: false });
    }
    const ok = await get(`/about/login?token=${token}`);
    assert.equal(ok.status, 302);
    assert.equal(ok.headers.location, '/about/config');
    const cookie = String(ok.headers['set-cookie']);
    assert.match(cookie, new RegExp(`^token=${token};`));
    for (const flag of ['HttpOnly', 'Secure', 'SameSite=Strict']) assert.ok(cookie.includes(flag), flag);
  });

  it('config and execution details need the cookie; wrong or none is 401', async () => {
    for (const p of ['/about/config', '/about/executions/details']) {
      for (const headers of [undefined, { cookie: 'token=' }, { cookie: `token=${'f'.repeat(64)}` }, { cookie: `other=${token}` }]) {
        const reply = await get(p, headers);
        assert.equal(reply.status, 401, `${p} ${JSON.stringify(headers)}`);
        assert.doesNotMatch(reply.body, /aleph-edge\.test|status\.sock|echo/);
      }
    }
    const config = await get('/about/config', { cookie: `token=${token}` });
    assert.equal(config.status, 200);
    const effective = JSON.parse(config.body);
    assert.equal(effective.server.domain, DUAL_NAME);
    assert.equal(effective.node.checkProgram, DIAGNOSTIC_PROGRAM_HASH);
    assert.deepEqual(effective.programs.local[0].env, { API_TOKEN: '[redacted]' });
    const details = await get('/about/executions/details', { cookie: `x=1; token=${token}` });
    assert.equal(details.status, 200);
    const records = JSON.parse(details.body);
    assert.equal(records[echo].hash, echo);
    assert.equal(records[echo].state, 'ready');
  });

  it('the secret is a 0600 file under the state directory, kept across starts', async () => {
    const file = path.join(node.dir, 'login-token');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await readFile(file, 'utf8')).trim(), token);
    assert.match(token, /^[0-9a-f]{64}$/);
  });

  it('/status/config shows the public fields only', async () => {
    const reply = await get('/status/config');
    assert.equal(reply.status, 200);
    const config = JSON.parse(reply.body);
    assertShape(config, {
      DOMAIN_NAME: 'string', version: 'string',
      references: { API_SERVER: 'string', CHECK_FASTAPI_VM_ID: 'string' },
      orchestrator: { driver: 'string', max_vms: 'number', memory_budget_mib: 'number' },
    });
    assert.equal(config.references.CHECK_FASTAPI_VM_ID, DIAGNOSTIC_PROGRAM_HASH);
  });

  it('/status/check/host probes the configured targets', async () => {
    const before = targets.hits();
    const reply = await get('/status/check/host');
    const result = JSON.parse(reply.body);
    assertShape(result, HOST_CHECK);
    assert.deepEqual(
      [result.ipv4.egress, result.ipv4.dns, result.ipv4.domain, result.ipv6.egress, result.ipv6.dns, result.ipv6.domain],
      [true, true, true, true, true, true],
    );
    assert.equal(reply.status, 200);
    assert.equal(result.ipv4.http, true); // the domain reaches this node on 127.0.0.1 (its Server header)
    assert.equal(result.ipv6.http, false); // and nothing of ours listens on ::1
    assert.ok(targets.hits() >= before + 2);
  });

  it('/status/check/version needs a reference; an uncomparable node version is 503', async () => {
    const missing = await get('/status/check/version');
    assert.equal(missing.status, 400);
    assert.equal((await get('/status/check/version?reference=%3Cscript%3E')).status, 400);
    // The test node runs as version "test".
    assert.equal((await get('/status/check/version?reference=1.0.0')).status, 503);
  });

  it('/control/* is served by the control component (tests in test/control/); other methods and unknown pages are refused', async () => {
    assert.equal((await get('/control/allocations')).status, 405);
    const unsigned = await get('/control/allocations', undefined, 'POST');
    assert.equal(unsigned.status, 401);
    assert.equal(unsigned.body, 'Authentication token received is invalid');
    assert.equal((await get('/control/nothing')).status, 404);
    assert.equal((await get('/about/usage/system', undefined, 'POST')).status, 405);
    const missing = await get('/about/nothing');
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.server, 'aleph-edge/test');
  });

  it('hostile input gets a 4xx, never a crash or an echo', async () => {
    assert.equal((await get('/about/login?token=%E0%A4%A')).status, 401);
    assert.equal((await get('/about/login?token=' + 'a'.repeat(4000))).status, 401);
    assert.equal((await get('/about/config', { cookie: `token=${'x'.repeat(6000)}; token=${token.toUpperCase()}` })).status, 401);
    assert.equal((await get('/about/config', { cookie: ';;;=;token' })).status, 401);
    const long = await get('/status/check/version?reference=' + '<'.repeat(2000));
    assert.equal(long.status, 400);
    assert.ok(long.body.length < 200 && !long.body.includes('<'));
    const head = await get('/', undefined, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    const preflight = await get('/about/usage/system', { 'access-control-request-method': 'GET', origin: 'https://monitor.example' }, 'OPTIONS');
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], '*');
    // The node still answers.
    assert.equal((await get('/status/config')).status, 200);
  });

  it('no page or header shows the token or a program secret', async () => {
    await get('/status/check/host');
    assert.ok(bodies.length > 20);
    const cookieReplies = bodies.filter((b) => b.includes('set-cookie'));
    for (const body of bodies) {
      if (cookieReplies.includes(body)) continue; // the login answer hands the caller its own token back as a cookie
      assert.ok(!body.includes(token), 'the token leaked');
      assert.ok(!body.includes(PROGRAM_SECRET), 'a program secret leaked');
    }
  });
});

describe('checks that fail say so', () => {
  let node: TestNode;
  before(async () => {
    node = await startTestNode({
      programs: [],
      extra: [
        '[node]',
        `check_program = "${'e'.repeat(64)}"`, // defined nowhere
        '[node.checks]',
        'ipv4_url = "http://127.0.0.1:9/"', 'ipv6_url = "http://[::1]:9/"', 'dns_hostname = "nothing.invalid"', 'timeout = "1s"',
      ].join('\n'),
    });
  });
  after(async () => node?.close());

  it('an unknown check program: every check false, 503, in time', async () => {
    const reply = await request(node, { host: node.domain, path: '/status/check/fastapi' });
    assert.equal(reply.status, 503);
    const result = JSON.parse(reply.body);
    assert.ok(Object.values(result).every((v) => v === false));
    assert.deepEqual(JSON.parse((await request(node, { host: node.domain, path: '/status/check/ipv6' })).body), { host: false, vm: false });
  });

  it('unreachable probe targets and an unresolvable name: 503 with the failing fields false', async () => {
    const reply = await request(node, { host: node.domain, path: '/status/check/host' });
    assert.equal(reply.status, 503);
    const result = JSON.parse(reply.body);
    assert.equal(result.ipv4.egress, false);
    assert.equal(result.ipv6.egress, false);
    assert.equal(result.ipv4.dns, false);
    assert.equal(result.ipv6.dns, false);
  });
});
