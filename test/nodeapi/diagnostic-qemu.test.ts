// The diagnostic program as the network runs it: a PROGRAM message (zip of
// examples/diagnostic on the built Debian runtime, a persistent volume at
// /var/lib/example) on the stand-in Aleph API, booted by the qemu driver under TCG,
// checked through /status/check/fastapi with node.check_program naming it. Its probe
// targets are servers of this test, reached from the guest through QEMU's user-mode
// network (10.0.2.2 is the host's loopback; where qemu gets its own namespace behind
// pasta instead, root with pasta, the internet and IPv4 probes go to a server in an
// "outside" namespace, as the host's loopback is out of the guest's reach there);
// its guest API (messages, cache) goes
// through QEMU's guestfwd to the node, with a redis-server of the test's own.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AlephEdgeNode } from '../../src/app/index.js';
import { setLogLevel } from '../../src/common/index.js';
import { loadConfig } from '../../src/config/index.js';
import { buildBaseInitramfs, ensureKernel, ensureRuntime } from '../../src/drivers/image/index.js';
import { FakeAlephApi, zip } from '../fixtures/aleph-api/server.js';
import { removeRedis, startRedis, type RedisServer } from '../guestapi/redis-harness.js';
import { netnsSkipReason, processesWith, qemuSkipReason } from '../drivers/qemu-guest.js';
import { pastaSkipReason, startOutside, type Outside } from '../helpers/outside.js';
import { request, type TestNode } from '../helpers/node.js';
import { qemuAlephConfig } from '../helpers/qemu-aleph-config.js';
import { ROOT } from '../helpers/paths.js';
import { startProbeTargets, type ProbeTargets } from './local-servers.js';
import { FASTAPI, assertShape } from './shapes.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');
const skip = qemuSkipReason();
const SLIRP_HOST = '10.0.2.2';

describe('the diagnostic program in a qemu VM (TCG), checked by the node', { skip: skip || false, timeout: 600_000 }, () => {
  let dir: string;
  let api: FakeAlephApi;
  let targets: ProbeTargets;
  let redis: RedisServer;
  let node: TestNode | undefined;
  let hash: string;
  let outside: Outside | undefined;

  before(async () => {
    // Built by .ci/setup.d/runtime.sh (minutes): never here, so a missing one fails clearly.
    const runtimePath = await ensureRuntime(undefined, undefined, undefined, true);
    const kernel = await ensureKernel();
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-diagvm-'));
    const initramfs = join(dir, 'initramfs.cpio');
    await writeFile(initramfs, await buildBaseInitramfs({ modulesDir: kernel.modulesDir }));
    targets = await startProbeTargets();
    // With internet on a root node with pasta, 10.0.2.2 is the VM's own namespace (docs/security.md).
    if (!netnsSkipReason() && !pastaSkipReason()) outside = await startOutside('aeis2d', '198.18.0');
    const v4Target = outside ? `${outside.ip}:${outside.port}` : `${SLIRP_HOST}:${targets.v4Port}`;
    redis = await startRedis();
    api = new FakeAlephApi();
    await api.start();
    const runtime = api.addStore(await readFile(runtimePath));
    const code = api.addStore(zip({ 'main.py': { text: await readFile(join(ROOT, 'examples/diagnostic/main.py'), 'utf8') } }));
    hash = api.addProgram({
      code, runtime, encoding: 'zip', entrypoint: 'main:app', memory: 256,
      volumes: [{ mount: '/var/lib/example', name: 'state', persistence: 'host', size_mib: 4 }],
      variables: {
        DIAGNOSTIC_INTERNET_URL: `http://${v4Target}/`,
        DIAGNOSTIC_IPV4_TARGET: v4Target,
        DIAGNOSTIC_DNS_HOSTNAME: 'localhost', // the guest init writes it for 127.0.0.1 and ::1
        DIAGNOSTIC_MESSAGE_HASH: runtime, // /messages and /get_a_message read the runtime's STORE message
      },
      // Outbound access for the probes (QEMU user networking without restrict=on).
      edit: (content) => { content.environment = { ...(content.environment as object), internet: true }; },
    });

    const nodeDir = join(dir, 'node');
    await mkdir(nodeDir, { recursive: true });
    const config = join(nodeDir, 'aleph-edge.toml');
    await writeFile(config, qemuAlephConfig({
      nodeDir, shared: dir, kernel: kernel.vmlinuz, initramfs, apiUrl: api.url, redis: redis.address,
      extra: ['subscribe = false', '[node]', `check_program = "${hash}"`],
    }));
    const settings = await loadConfig(config);
    settings.server.httpsListen = [{ host: '127.0.0.1', port: 0 }];
    const started = await AlephEdgeNode.start(settings, { version: 'test', inherited: [] });
    node = {
      node: started, settings, dir: nodeDir, configFile: config, domain: 'edge.test', httpsPort: started.port('https')!, httpPort: 0,
      socket: settings.server.statusSocket, ca: await readFile(join(nodeDir, 'certs/internal/ca.crt'), 'utf8'), close: () => started.drain(),
    };
  });

  after(async () => {
    await node?.close();
    await api?.close();
    await targets?.close();
    await outside?.close();
    if (redis) await removeRedis(redis);
    if (!dir) return;
    for (const pid of processesWith(dir)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('every check holds, the guest API ones included (environ, messages, cache, get_a_message)', async (t) => {
    // Under TCG the first boot (kernel, runtime, Python) takes longer than a monitor
    // waits; a node keeps its check program warm, so boot it first.
    const t0 = performance.now();
    const index = await request(node!, { host: node!.domain, path: `/vm/${hash}/` });
    t.diagnostic(`diagnostic program cold start under TCG: ${Math.round(performance.now() - t0)} ms`);
    assert.equal(index.status, 200, index.body);
    assert.equal(JSON.parse(index.body).Example, 'example_fastapi');

    const check = await request(node!, { host: node!.domain, path: '/status/check/fastapi' });
    const result = JSON.parse(check.body);
    t.diagnostic(`checks: ${check.body}`);
    assertShape(result, FASTAPI);
    for (const name of ['index', 'environ', 'messages', 'ipv4', 'internet', 'dns', 'cache', 'persistent_storage', 'error_handling', 'get_a_message', 'lifespan']) {
      assert.equal(result[name], true, name);
    }
    assert.equal(check.status, 200);
  });
});
