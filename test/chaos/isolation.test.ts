// A program reaches only its own things (docs/security.md, "Programs from the network
// under the process driver"). Two programs from the Aleph network run sandboxed by the
// process driver (real bubblewrap, real namespaces) next to a real Redis and a host
// service on loopback. From inside program A: Redis, the host's loopback services and
// the node's listeners are unreachable, B's guest API address is A's own, and A's
// network namespace holds none of the host's sockets. From the host, as the local user
// `nobody`: neither program's unix sockets can be opened.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { findSandbox } from '../../src/programs/aleph/index.js';
import { FakeAlephApi, zip } from '../fixtures/aleph-api/server.js';
import { removeRedis, startRedis, type RedisServer } from '../guestapi/redis-harness.js';
import { alive, request, until, type TestNode } from '../helpers/node.js';
import { netnsSkipReason } from '../drivers/qemu-guest.js';
import { defaultGateway, pastaSkipReason, startOutside, type Outside } from '../helpers/outside.js';
import { ProcessDriver } from '../../src/drivers/process/index.js';
import { openOutbound, outboundTools } from '../../src/drivers/outbound.js';
import { prepareSandbox } from '../../src/drivers/process/sandbox.js';
import { startAlephNode } from '../programs/helpers.js';

const run = promisify(execFile);
const sandbox = await findSandbox();
const skip = sandbox ? false : 'bubblewrap or socat is not installed (.ci/setup.d/aleph.sh installs them)';

// The probe: /env, /connect?host=&port= (a TCP connect), /get?url= and /put?url= (HTTP), /proc-net (its /proc/net/tcp).
function probeZip(): Buffer {
  return zip({
    start: { text: '#!/bin/sh\nexec node probe.mjs\n', executable: true },
    'probe.mjs': {
      text: [
        "import http from 'node:http';",
        "import net from 'node:net';",
        "import { readFileSync } from 'node:fs';",
        'const json = (res, value) => res.end(JSON.stringify(value));',
        'http.createServer(async (req, res) => {',
        "  const url = new URL(req.url, 'http://x');",
        '  const q = (name) => url.searchParams.get(name);',
        "  if (url.pathname === '/env') return json(res, Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('ALEPH_') || k === 'PORT')));",
        "  if (url.pathname === '/connect') {",
        "    const socket = net.connect({ host: q('host'), port: Number(q('port')) });",
        '    socket.setTimeout(3000, () => socket.destroy(new Error(\'timeout\')));',
        "    socket.once('connect', () => { socket.destroy(); json(res, { connected: true }); });",
        "    socket.once('error', (e) => json(res, { connected: false, error: e.code ?? e.message }));",
        '    return;',
        '  }',
        "  if (url.pathname === '/get' || url.pathname === '/put') {",
        '    try {',
        "      const answer = await fetch(q('url'), url.pathname === '/put' ? { method: 'PUT', body: q('value') } : {});",
        '      return json(res, { status: answer.status, body: await answer.text() });',
        '    } catch (e) { return json(res, { error: String(e.cause?.code ?? e.message) }); }',
        '  }',
        "  if (url.pathname === '/proc-net') return res.end(readFileSync('/proc/net/tcp', 'utf8'));",
        "  res.end('ok');",
        "}).listen(Number(process.env.PORT), process.env.HOST);",
      ].join('\n'),
    },
  });
}

interface Connect {
  connected: boolean;
  error?: string;
}

describe('a sandboxed program reaches only its own things', { skip }, () => {
  let api: FakeAlephApi;
  let redis: RedisServer;
  let node: TestNode;
  let hostService: net.Server;
  let hostPort: number;
  let a: string;
  let b: string;

  const call = async <T>(hash: string, target: string): Promise<T> => {
    const reply = await request(node, { host: node.domain, path: `/vm/${hash}${target}` });
    assert.equal(reply.status, 200, reply.body);
    return JSON.parse(reply.body) as T;
  };

  before(async () => {
    api = new FakeAlephApi();
    await api.start();
    redis = await startRedis();
    // A service on the host's loopback, as another program's port or any local daemon would be.
    hostService = net.createServer((socket) => socket.end('host secret\n'));
    await new Promise<void>((resolve) => hostService.listen(0, '127.0.0.1', resolve));
    hostPort = (hostService.address() as net.AddressInfo).port;
    const code = api.addStore(probeZip());
    const runtime = api.addStore(Buffer.from('runtime (not fetched by the process driver)'));
    // A asks for internet (it gets a route out where the node can give one, never the host's things), B does not.
    a = api.addProgram({ code, runtime, variables: { NAME: 'a' }, edit: (c) => { c.environment = { ...(c.environment as object), internet: true }; } });
    b = api.addProgram({ code, runtime, variables: { NAME: 'b' }, edit: (c) => { c.environment = { ...(c.environment as object), internet: false }; } });
    node = await startAlephNode({ api: api.url, extra: ['[guest_api]', `redis = "${redis.address}"`].join('\n') });
  });
  after(async () => {
    await node?.close();
    await new Promise<void>((resolve) => hostService.close(() => resolve()));
    await removeRedis(redis);
    await api.close();
  });

  it('cannot reach Redis, the host loopback or the node from inside (with internet or without)', async () => {
    const targets: Array<[string, number, string]> = [
      ['127.0.0.1', redis.port, 'Redis'],
      ['127.0.0.1', hostPort, 'a host service on loopback'],
      ['127.0.0.1', node.httpsPort, "the node's TLS listener"],
    ];
    for (const program of [a, b]) {
      for (const [host, port, what] of targets) {
        const result = await call<Connect>(program, `/connect?host=${host}&port=${port}`);
        assert.equal(result.connected, false, `${what} (${host}:${port}) is reachable from inside a program`);
      }
    }
    // Its network namespace holds its own sockets only: none of the host's listeners show.
    const table = (await request(node, { host: node.domain, path: `/vm/${a}/proc-net` })).body;
    const listeningPorts = table.split('\n').slice(1).filter((line) => line.trim().split(/\s+/)[3] === '0A')
      .map((line) => parseInt(line.trim().split(/\s+/)[1]!.split(':')[1]!, 16));
    for (const port of [redis.port, hostPort, node.httpsPort]) assert.ok(!listeningPorts.includes(port), `host port ${port} is visible in the sandbox's /proc/net/tcp`);
  });

  it("uses its own guest API; another program's guest API address is its own", async () => {
    const envA = await call<Record<string, string>>(a, '/env');
    const envB = await call<Record<string, string>>(b, '/env');
    assert.ok(envB.ALEPH_API_HOST, 'B has a guest API');
    // B stores a secret through its own guest API.
    const stored = await call<{ status: number }>(b, `/put?url=${encodeURIComponent(`${envB.ALEPH_API_HOST}/cache/secret`)}&value=b-only`);
    assert.equal(stored.status, 200);
    assert.equal((await call<{ body: string }>(b, `/get?url=${encodeURIComponent(`${envB.ALEPH_API_HOST}/cache/secret`)}`)).body, 'b-only');
    // A, using B's address, reaches nothing of B's.
    const stolen = await call<{ status?: number; body?: string; error?: string }>(a, `/get?url=${encodeURIComponent(`${envB.ALEPH_API_HOST}/cache/secret`)}`);
    assert.notEqual(stolen.body, 'b-only', "A read B's cache through B's guest API address");
    assert.equal(stolen.status, 404, `A's own cache has no such key (got ${JSON.stringify(stolen)})`);
    assert.equal(envA.ALEPH_API_HOST, envB.ALEPH_API_HOST, 'each program has the same address, inside its own namespace');
    // And Redis holds B's key under B's hash only.
    assert.equal((await redis.cli('GET', `ae:cache:${b}:secret`)).trim(), 'b-only');
  });

  it('its port and guest API are unix sockets only the node can open', async () => {
    const root = path.join(node.dir, 'sandbox');
    // The test's node folder is private (mkdtemp); open it so only the node's own modes protect the sockets.
    await chmod(node.dir, 0o755);
    const runs = await readdir(root);
    assert.ok(runs.length >= 2, `one run folder per sandboxed execution (${runs.join(', ')})`);
    for (const folder of runs) {
      const socket = path.join(root, folder, 'http.sock');
      // As the local user nobody: the 0700 folder refuses the path.
      const attempt = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c',
        'import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n  s.connect(sys.argv[1]); print("connected")\nexcept OSError as e: print(e.errno)', socket]);
      assert.equal(attempt.stdout.trim(), '13', `nobody opened ${socket} (EACCES expected, got ${attempt.stdout.trim()})`);
    }
  });
});

// Outbound internet (environment.internet) under the process driver: pasta gives the
// program's namespace a route out. CI has no internet: "outside" is a network namespace
// of the test's own behind a veth pair, with an HTTP server on its address.
const outsideSkip = skip || netnsSkipReason() || pastaSkipReason();

describe('a sandboxed program with internet reaches outside, and still nothing of the host', { skip: outsideSkip || false }, () => {
  let outside: Outside | undefined;
  let outsideIp = '';
  let api: FakeAlephApi;
  let redis: RedisServer;
  let node: TestNode;
  let online: string;
  let offline: string;
  let closed = false;

  const call = async <T>(hash: string, target: string): Promise<T> => {
    const reply = await request(node, { host: node.domain, path: `/vm/${hash}${target}` });
    assert.equal(reply.status, 200, reply.body);
    return JSON.parse(reply.body) as T;
  };
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });

  before(async () => {
    outside = await startOutside('aeis2', '198.51.100');
    outsideIp = outside.ip;

    api = new FakeAlephApi();
    await api.start();
    redis = await startRedis();
    const code = api.addStore(probeZip());
    const runtime = api.addStore(Buffer.from('runtime (not fetched by the process driver)'));
    const withInternet = (internet: boolean) => (c: Record<string, unknown>) => { c.environment = { ...(c.environment as object), internet }; };
    online = api.addProgram({ code, runtime, variables: { NAME: 'online' }, edit: withInternet(true) });
    offline = api.addProgram({ code, runtime, variables: { NAME: 'offline' }, edit: withInternet(false) });
    node = await startAlephNode({ api: api.url, extra: ['[guest_api]', `redis = "${redis.address}"`].join('\n') });
  });
  after(async () => {
    if (!closed) await node?.close();
    if (redis) await removeRedis(redis);
    await api?.close();
    await outside?.close();
  });

  it('with internet: connects to a server outside; without: no route', async () => {
    const got = await call<{ status?: number; body?: string; error?: string }>(online, `/get?url=${encodeURIComponent(`http://${outsideIp}:8000/`)}`);
    assert.equal(got.body, 'hello from outside\n', JSON.stringify(got));
    const refused = await call<Connect>(offline, `/connect?host=${outsideIp}&port=8000`);
    assert.equal(refused.connected, false, 'a program without internet reached outside');
    assert.equal(refused.error, 'ENETUNREACH', 'no route at all, not a timeout');
  });

  it("with internet: Redis, the node, the host's loopback and its other programs stay out of reach", async () => {
    // Where local programs and their guest links listen on the host.
    const services = await Promise.all(['127.0.0.1', '127.0.0.2'].map((host) => new Promise<net.Server>((resolve) => {
      const service = net.createServer((socket) => socket.end('host secret\n'));
      service.listen(0, host, () => resolve(service));
    })));
    const targets: Array<[string, number, string]> = [
      ['127.0.0.1', redis.port, 'Redis on loopback'],
      ['127.0.0.1', node.httpsPort, "the node's TLS listener"],
      ...services.map((service): [string, number, string] => {
        const { address, port } = service.address() as net.AddressInfo;
        return [address, port, `a host service on ${address} (a local program or guest link)`];
      }),
    ];
    // The host's default gateway is not mapped to the host's loopback (pasta's --no-map-gw).
    const gateway = defaultGateway();
    if (gateway) targets.push([gateway, redis.port, "Redis through the gateway's address"]);
    for (const [host, port, what] of targets) {
      const result = await call<Connect>(online, `/connect?host=${host}&port=${port}`);
      assert.equal(result.connected, false, `${what} (${host}:${port}) is reachable from a program with internet`);
    }
    for (const service of services) service.close();
    // The other program is only a unix socket in its own run folder: nothing in this namespace listens for it.
    const table = (await request(node, { host: node.domain, path: `/vm/${online}/proc-net` })).body;
    const listening = table.split('\n').slice(1).filter((line) => line.trim().split(/\s+/)[3] === '0A').map((line) => line.trim().split(/\s+/)[1]);
    assert.deepEqual(listening.sort(), ['0100007F:1F90', '0200007F:1F91'].sort(), 'its own port and guest API relay only');
  });

  it('no port of the program is bound on the host, and its namespace and pasta go when it stops', async () => {
    const pidFiles = await pastaPidFiles(node.dir);
    assert.equal(pidFiles.length, 1, 'one pasta, for the program with internet');
    const pasta = Number((await readFile(pidFiles[0]!, 'utf8')).trim());
    assert.ok(alive(pasta), 'pasta runs while the program does');
    // pasta binds nothing on the host for the program (-t none -u none): its own sockets are only its upstream connections.
    assert.deepEqual(listeningInodesOf(pasta), [], 'pasta listens on no host port');
    // This program's namespace, by name (pasta's --netns): other aleph-edge namespaces may come
    // and go meanwhile (another test's, or the previous run's being reaped), so no global count.
    const args = readFileSync(`/proc/${pasta}/cmdline`, 'utf8').split('\0');
    const ours = args[args.indexOf('--netns') + 1]!;
    const namespaces = () => ip('netns', 'list').split('\n').map((l) => l.split(' ')[0]);
    assert.ok(ours.startsWith('aleph-edge-') && namespaces().includes(ours), `the program's namespace ${ours} exists`);
    closed = true;
    await node.close();
    await until(() => !alive(pasta), 10_000, 'pasta to quit');
    assert.ok(!namespaces().includes(ours), "the program's namespace is deleted");
  });
});

describe("a SIGKILLed node's outbound namespaces", { skip: outsideSkip || false }, () => {
  it('are deleted when the process driver starts again on its run folder, and their pasta quits', async () => {
    const runDir = await mkdtemp(path.join(os.tmpdir(), 'aeis2-run-'));
    try {
      // What a node killed with SIGKILL leaves: a run folder, its named namespace, pasta serving it.
      const folder = await mkdtemp(path.join(runDir, 'aeis2-exec-'));
      const found = outboundTools();
      assert.ok('tools' in found, 'missing' in found ? found.missing : '');
      const outbound = await openOutbound(found.tools, path.basename(folder), folder);
      const pasta = Number((await readFile(path.join(folder, 'pasta.pid'), 'utf8')).trim());
      assert.ok(alive(pasta));
      assert.ok(existsSync(outbound.netns));
      new ProcessDriver({ stopGraceMs: 100, runDir });
      assert.ok(!existsSync(outbound.netns), 'the namespace is deleted');
      await until(() => !alive(pasta), 10_000, 'pasta to quit with its namespace');
      await outbound.close();
    } finally {
      await rm(runDir, { recursive: true, force: true });
    }
  });
});

describe('internet where the node cannot give it', { skip }, () => {
  it('the program runs in its bare namespace, and the reason is given', async () => {
    const runDir = await mkdtemp(path.join(os.tmpdir(), 'aeis2-run-'));
    const bin = await mkdtemp(path.join(os.tmpdir(), 'aeis2-bin-'));
    const savedPath = process.env.PATH;
    try {
      // A PATH with everything but pasta.
      for (const tool of ['ip', 'nsenter']) {
        const found = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
        if (found) await symlink(found, path.join(bin, tool));
      }
      process.env.PATH = bin;
      const run = await prepareSandbox({ ...sandbox!, options: [], ignoreTerm: false, internet: true }, runDir, 'aeis2-exec', ['/bin/true'], undefined);
      assert.equal(run.internet, false);
      assert.match(run.internetMissing ?? '', process.getuid?.() === 0 ? /pasta \(apt install passt\) not installed/ : /does not run as root/);
      assert.ok(run.argv.includes('--unshare-net') && !run.argv.includes('--share-net'), 'bubblewrap makes its own empty namespace');
      await run.remove();
    } finally {
      process.env.PATH = savedPath;
      await rm(runDir, { recursive: true, force: true });
      await rm(bin, { recursive: true, force: true });
    }
  });
});

/** pasta.pid files in the node's sandbox run folders. */
async function pastaPidFiles(nodeDir: string): Promise<string[]> {
  const root = path.join(nodeDir, 'sandbox');
  const found: string[] = [];
  for (const folder of await readdir(root)) {
    const file = path.join(root, folder, 'pasta.pid');
    if (existsSync(file)) found.push(file);
  }
  return found;
}

/** Inodes of TCP sockets in LISTEN state that process `pid` holds (host namespace tables). */
function listeningInodesOf(pid: number): string[] {
  const held = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    const target = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
    if (target) held.add(target);
  }
  const rows = ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((file) => readFileSync(file, 'utf8').split('\n').slice(1));
  return rows.map((row) => row.trim().split(/\s+/)).filter((f) => f[3] === '0A' && held.has(f[9]!)).map((f) => f[9]!);
}

