// The qemu driver booting real VMs under TCG (no KVM needed): through the whole node
// (TLS, routing, orchestrator, proxy) into busybox httpd inside the guest, stopped
// after idle_timeout, with no qemu process or temp file left behind.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AlephEdgeNode } from '../../src/app/index.js';
import { setLogLevel } from '../../src/common/index.js';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/index.js';
import { createDriver, DriverStartError, NetworkPool, waitForHttp, type Endpoint } from '../../src/drivers/index.js';
import type { Program } from '../../src/programs/index.js';
import { encodeCpio, envScript } from '../../src/drivers/image/index.js';
import { moduleDepends } from '../../src/drivers/image/initramfs.js';
import { GUEST_API_LOOPBACK, qemuArgs, QemuDriver } from '../../src/drivers/qemu/index.js';
import { programHash, request, until, type TestNode } from '../helpers/node.js';
import { httpGet, makeProgram, nextSlot } from './helpers.js';
import { pastaSkipReason, startOutside } from '../helpers/outside.js';
import { guestSetup, netnsSkipReason, processesWith, qemuSkipReason, standInGuestApi, tcpListeners, writeGuestProgram, type GuestSetup } from './qemu-guest.js';

if (!process.env.ALEPH_EDGE_LOG) setLogLevel('warn');

describe('qemu command line', () => {
  it('microvm with user networking: virtio-mmio devices, loopback-only port forward, no route out', () => {
    const args = qemuArgs({
      machine: 'microvm', accel: 'tcg', memoryMib: 256, vcpus: 2, kernel: '/k', initrd: '/i', kernelArgs: ['aleph.ip=10.0.2.15/24'],
      qmpSocket: '/run/q.sock', net: { mode: 'user', hostPort: 4567, internet: false },
    });
    const joined = args.join(' ');
    assert.match(joined, /-M microvm/);
    assert.match(joined, /-accel tcg -cpu max -m 256 -smp 2/);
    assert.match(joined, /-netdev user,id=n0,restrict=on,hostfwd=tcp:127\.0\.0\.1:4567-:8080/);
    assert.match(joined, /-device virtio-net-device,netdev=n0/);
    assert.match(joined, /-qmp unix:\/run\/q\.sock,server=on,wait=off/);
    assert.ok(args.includes('-no-reboot'));
    assert.match(args[args.indexOf('-append') + 1]!, /console=ttyS0 .*aleph\.ip=10\.0\.2\.15\/24$/);
  });

  it('user networking with the guest API: one guestfwd to a per-connection command, plain words only', () => {
    const spec = (command: string[]) => ({
      machine: 'q35' as const, accel: 'tcg' as const, memoryMib: 128, vcpus: 1, kernel: '/k', initrd: '/i', kernelArgs: [],
      qmpSocket: '/q', net: { mode: 'user' as const, hostPort: 4567, internet: false, guestApiCommand: command },
    });
    assert.match(qemuArgs(spec(['/usr/bin/socat', '-t', '5', 'STDIO', 'UNIX-CONNECT:/run/vm-1/guest-api.sock'])).join(' '),
      / -netdev user,id=n0,restrict=on,hostfwd=tcp:127\.0\.0\.1:4567-:8080,guestfwd=tcp:10\.0\.2\.100:80-cmd:\/usr\/bin\/socat -t 5 STDIO UNIX-CONNECT:\/run\/vm-1\/guest-api\.sock -device /);
    assert.throws(() => qemuArgs(spec(['/opt/a,b/socat', 'STDIO'])), /needs quoting/);
    assert.throws(() => qemuArgs(spec(['/bin/sh', '-c', 'nc x; rm -rf /'])), /needs quoting/);
  });

  it('q35 with a tap device, KVM and the layout\'s drives in order, serial = id', () => {
    const joined = qemuArgs({
      machine: 'q35', accel: 'kvm', memoryMib: 128, vcpus: 1, kernel: '/k', initrd: '/i', kernelArgs: [],
      qmpSocket: '/q', net: { mode: 'tap', tap: 'aetap3' },
      drives: [{ id: 'runtime', path: '/rt.squashfs', readOnly: true }, { id: 'code', path: '/a,b.img', readOnly: true }, { id: 'volume_0', path: '/v.img', readOnly: false }],
    }).join(' ');
    assert.match(joined, /-M q35 -accel kvm -cpu host/);
    assert.match(joined, /-netdev tap,id=n0,ifname=aetap3,script=no,downscript=no -device virtio-net-pci,netdev=n0/);
    assert.match(joined, /-drive file=\/rt\.squashfs,if=none,id=runtime,format=raw,readonly=on -device virtio-blk-pci,drive=runtime,serial=runtime -drive file=\/a,,b\.img,if=none,id=code,format=raw,readonly=on -device virtio-blk-pci,drive=code,serial=code -drive file=\/v\.img,if=none,id=volume_0,format=raw,readonly=off/);
    assert.doesNotMatch(joined, /root=/);
  });
});

describe('guest image pieces', () => {
  it('quotes variables for the guest shell and refuses names it cannot export', () => {
    assert.equal(envScript({ A: "it's", B: 'x y $z' }), `export A='it'\\''s'\nexport B='x y $z'\n`);
    assert.throws(() => envScript({ 'BAD-NAME': '1' }), /cannot be passed/);
  });

  it('writes newc archives that cpio reads back', async (t) => {
    const archive = encodeCpio([
      { type: 'dir', path: 'app' },
      { type: 'file', path: 'app/start', mode: 0o755, data: Buffer.from('#!/bin/sh\n') },
      { type: 'symlink', path: 'app/link', target: 'start' },
    ]);
    assert.equal(archive.length % 4, 0);
    const { spawnSync } = await import('node:child_process');
    const listed = spawnSync('cpio', ['-t', '--quiet'], { input: archive });
    if (listed.error) return t.skip('cpio is not installed');
    assert.deepEqual(listed.stdout.toString().trim().split('\n'), ['app', 'app/start', 'app/link']);
  });
});

describe('VM settings in the config file', () => {
  const base = '[server]\ndomain = "edge.test"\n[tls]\nmode = "internal"\n';
  const hash = 'ab'.repeat(32);

  it('reads [drivers.*] and VM program fields; relative paths resolve against the file', () => {
    const settings = parseConfig(
      `${base}[orchestrator]\ndriver = "qemu"\n[drivers.qemu]\nkernel = "guest/vmlinuz"\ninitramfs = "/g/initramfs.cpio"\naccel = "tcg"\nmachine = "q35"\n` +
        `[drivers.network]\npool = "10.1.0.0/24"\nprefix = 29\n[drivers.firecracker]\njailer = "/usr/bin/jailer"\nuid = 900\napi_timeout = "2s"\n` +
        `[[programs.local]]\nhash = "${hash}"\ncode = "site"\ninternet = true\nenv = { A = "1" }\n`,
      '/etc/aleph-edge/aleph-edge.toml',
    );
    assert.equal(settings.drivers?.qemu.kernel, '/etc/aleph-edge/guest/vmlinuz');
    assert.equal(settings.drivers?.qemu.accel, 'tcg');
    assert.equal(settings.drivers?.qemu.machine, 'q35');
    assert.equal(settings.drivers?.qemu.runDir, '/run/aleph-edge/vms');
    assert.deepEqual(settings.drivers?.network, { pool: '10.1.0.0/24', prefix: 29, tapPrefix: 'aetap', stateDir: '/run/aleph-edge/net', outboundInterface: '', ipv6Pool: '', hostPorts: { min: 24000, max: 65535 } });
    assert.equal(settings.drivers?.firecracker.uid, 900);
    assert.equal(settings.drivers?.firecracker.apiTimeoutMs, 2000);
    const program = settings.programs.local[0]!;
    assert.deepEqual(program.command, []);
    assert.deepEqual(program.vm, { code: '/etc/aleph-edge/site', entrypoint: '/app/start', kernel: '', initramfs: '', internet: true });
  });

  it('keeps unknown keys and bad values as errors with their line', () => {
    assert.throws(
      () => parseConfig(`${base}[drivers.qemu]\nkernal = "x"\naccel = "hvf"\n[drivers.network]\npool = "10.1.0.1/33"\n[[programs.local]]\nhash = "${hash}"\ncode = "site"\nentrypoint = "start"\n`, '/c.toml'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        const text = err.format();
        assert.match(text, /drivers\.qemu\.kernal: unknown key/i);
        assert.match(text, /drivers\.qemu\.accel: must be one of auto, kvm, tcg/);
        assert.match(text, /drivers\.network\.pool: "10\.1\.0\.1\/33" is not an IPv4 CIDR/);
        assert.match(text, /programs\.local\[0\]\.entrypoint: must be an absolute path inside the guest/);
        return true;
      },
    );
  });

  it('a program without code still needs a command', () => {
    assert.throws(() => parseConfig(`${base}[[programs.local]]\nhash = "${hash}"\n`, '/c.toml'), /command: is required/);
  });
});

describe('kernel module order', () => {
  it('reads depends= from a module\'s modinfo strings', () => {
    const ko = Buffer.from('\x7fELF....\0license=GPL\0depends=virtio_ring,net-failover\0retpoline=Y\0');
    assert.deepEqual(moduleDepends(ko), ['virtio_ring', 'net_failover']);
    assert.deepEqual(moduleDepends(Buffer.from('\0depends=\0')), []);
  });
});

describe('qemu driver start-up checks', () => {
  it('says exactly what is missing', () => {
    assert.throws(
      () => new QemuDriver({ stopGraceMs: 100, binary: 'no-such-qemu', kernel: '/nope/vmlinuz', initramfs: '', machine: 'auto', accel: 'tcg', network: 'tap', runDir: '/tmp/x' }),
      (err: Error) => {
        assert.match(err.message, /drivers\.qemu\.binary: no-such-qemu is not in PATH/);
        assert.match(err.message, /drivers\.qemu\.kernel: \/nope\/vmlinuz does not exist/);
        assert.match(err.message, /drivers\.qemu\.initramfs is not set/);
        assert.match(err.message, /network = "tap" needs a \[drivers\.network\] pool/);
        return true;
      },
    );
  });

  it('tap networking needs nft, and says so', () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      assert.throws(
        () => new QemuDriver({ stopGraceMs: 100, binary: process.execPath, kernel: process.execPath, initramfs: process.execPath, machine: 'auto', accel: 'tcg', network: 'tap', runDir: '/tmp/x', pool: new NetworkPool({ pool: '10.0.0.0/30', prefix: 30, tapPrefix: 'x', stateDir: '/tmp/x', outboundInterface: '' }) }),
        /drivers\.qemu\.network = "tap": nft is not in PATH \(apt install nftables/,
      );
    } finally {
      process.env.PATH = path;
    }
  });
});

const skip = qemuSkipReason();

/** A VM program whose /cgi-bin/api calls the guest API through $ALEPH_API_HOST (qemu-guest.ts). */
function guestApiProgram(): Program {
  const program = makeProgram([]);
  program.sender = '0x5a3bE3a63C3C8bD9c1B0a1F8D4b2a8E31bC0f2D1';
  program.launch = { kind: 'vm', code: guestCode, entrypoint: '/app/start', env: { ALEPH_API_HOST: 'http://set-by-the-program' }, kernel: '', initramfs: '', internet: false };
  return program;
}
let guestCode = '';

/** The guest's view of its guest API: its ALEPH_* variables and, as `answer`, what the API said to its call. */
async function guestApiCall(endpoint: Endpoint, sender: string): Promise<Record<string, string>> {
  await waitForHttp(endpoint, { path: '/', deadline: Date.now() + 60_000 });
  const reply = (await httpGet(endpoint, '/cgi-bin/api')).body;
  const lines = reply.split('\n').filter((l) => l !== '');
  const vars: Record<string, string> = Object.fromEntries(lines.filter((l) => l.startsWith('ALEPH_')).map((l) => l.split('=', 2) as [string, string]));
  assert.equal(vars.ALEPH_ADDRESS_TO_USE, sender, reply);
  assert.equal(vars.ALEPH_API_UNIX_SOCKET, '[]', 'no socket path inside a VM');
  vars.answer = lines.filter((l) => !l.startsWith('ALEPH_')).join('\n');
  return vars;
}

/** Connects to a unix socket as the local user nobody: 'connected' or the errno (13 = EACCES). */
function nobodyConnects(path: string): string {
  const script = 'import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1]); print("connected")\nexcept OSError as e:\n    print(e.errno)\n';
  return execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c', script, path], { encoding: 'utf8' }).trim();
}

describe('qemu driver, real VMs under TCG', { skip: skip || false, timeout: 600_000 }, () => {
  let guest: GuestSetup;
  let code: string;

  before(async () => {
    guest = await guestSetup();
    code = await writeGuestProgram(guest.dir);
    guestCode = code;
  });
  after(async () => {
    if (!guest) return;
    // Safety net: a VM this suite started must never outlive it (a hung guest would keep the test process alive).
    for (const pid of processesWith(guest.dir)) process.kill(pid, 'SIGKILL');
    await rm(guest.dir, { recursive: true, force: true });
  });

  it('serves a request through the node into the guest, stops when idle, leaves nothing behind', async (t) => {
    const dir = join(guest.dir, 'node');
    const runDir = join(dir, 'vms');
    await mkdir(dir, { recursive: true });
    const hash = programHash('qemu-guest');
    const config = join(dir, 'aleph-edge.toml');
    await writeFile(
      config,
      [
        '[server]',
        'domain = "edge.test"',
        'https_listen = ["127.0.0.1:8443"]',
        'http_listen = []',
        `status_socket = "${join(dir, 'status.sock')}"`,
        'drain_timeout = "5s"',
        '[tls]',
        'mode = "internal"',
        `storage = "${join(dir, 'certs')}"`,
        '[orchestrator]',
        'driver = "qemu"',
        'idle_timeout = "1500ms"',
        'boot_timeout = "60s"',
        'stop_grace = "5s"',
        '[drivers.qemu]',
        `kernel = "${guest.kernel.vmlinuz}"`,
        `initramfs = "${guest.initramfs}"`,
        'accel = "tcg"',
        `run_dir = "${runDir}"`,
        '[[programs.local]]',
        'name = "guest"',
        `hash = "${hash}"`,
        `code = "${code}"`,
        'memory_mib = 128',
        `env = { GREETING = "hello from the host", QUOTED = "it's \\"quoted\\"" }`,
      ].join('\n') + '\n',
    );
    const settings = await loadConfig(config);
    settings.server.httpsListen = [{ host: '127.0.0.1', port: 0 }];
    const node = await AlephEdgeNode.start(settings, { version: 'test', inherited: [] });
    const { readFile } = await import('node:fs/promises');
    const testNode = {
      node, settings, dir, configFile: config, domain: 'edge.test', httpsPort: node.port('https')!, httpPort: 0,
      socket: settings.server.statusSocket, ca: await readFile(join(dir, 'certs/internal/ca.crt'), 'utf8'), close: async () => node.drain(),
    } satisfies TestNode;
    try {
      const t0 = performance.now();
      const first = await request(testNode, { host: 'edge.test', path: `/vm/${hash}/index.html` });
      const coldMs = Math.round(performance.now() - t0);
      t.diagnostic(`cold boot to first response under TCG: ${coldMs} ms`);
      process.stderr.write(`# qemu TCG cold boot to first response: ${coldMs} ms\n`);
      assert.equal(first.status, 200, first.body);
      assert.equal(first.body, 'hello from the guest\n');
      assert.equal(first.headers['aleph-program-itemhash'], hash);

      const env = await request(testNode, { host: 'edge.test', path: `/vm/${hash}/cgi-bin/env` });
      assert.equal(env.status, 200);
      assert.match(env.body, /GREETING=hello from the host/);
      assert.match(env.body, /QUOTED=it's "quoted"/);

      assert.equal(processesWith(runDir).length, 1, 'one qemu process for the program');
      assert.equal((await readdir(runDir)).length, 1, 'one per-VM directory while it runs');

      // idle_timeout: the VM is stopped and everything it used is gone.
      await until(() => processesWith(runDir).length === 0, 15_000, 'qemu to stop after idle_timeout');
      await until(async () => (await readdir(runDir)).length === 0, 5_000, 'the per-VM directory to be removed');
    } finally {
      await node.drain();
    }
    // A guest-API forward's socat may outlive its VM by a moment (socat -t 5).
    await until(() => processesWith(runDir).length === 0, 10_000, 'nothing of the VM left after the drain');
    assert.deepEqual(await readdir(runDir), []);
  });

  it('reports a guest whose program exits as an unexpected exit, and cleans up', async () => {
    const runDir = join(guest.dir, 'crash-vms');
    const crashing = join(guest.dir, 'crashing');
    await mkdir(crashing, { recursive: true });
    await writeFile(join(crashing, 'start'), '#!/bin/sh\necho "exiting at once"\nexit 3\n', { mode: 0o755 });
    const driver = createDriver('qemu', {
      stopGraceMs: 2000,
      drivers: {
        process: { python: 'python3' },
        qemu: { binary: 'qemu-system-x86_64', kernel: guest.kernel.vmlinuz, initramfs: guest.initramfs, machine: 'auto', accel: 'tcg', network: 'user', runDir },
        firecracker: undefined as never,
        network: undefined as never,
        snapshots: { enabled: false, dir: '', maxBytes: 0 },
      },
    });
    const program = makeProgram([]);
    program.launch = { kind: 'vm', code: crashing, entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false };
    const instance = await driver.start(program, nextSlot());
    let exit;
    try {
      exit = await Promise.race([instance.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 30_000).unref())]);
    } finally {
      await instance.stop(); // no-op once it has exited; a hung guest must not outlive the test
    }
    assert.ok(exit, 'the VM exits by itself when its program ends');
    assert.equal(exit.requested, false);
    assert.deepEqual(processesWith(runDir), []);
    assert.deepEqual(await readdir(runDir), []);
  });

  it('boots with a tap device from the pool and is reached at the guest address', { skip: netnsSkipReason() || false }, async () => {
    const stateDir = join(guest.dir, 'tap-net');
    const runDir = join(guest.dir, 'tap-vms');
    const pool = new NetworkPool({ pool: '10.213.11.0/29', prefix: 30, tapPrefix: 'aeqt', stateDir, outboundInterface: '' });
    const driver = new QemuDriver({ stopGraceMs: 3000, binary: 'qemu-system-x86_64', kernel: guest.kernel.vmlinuz, initramfs: guest.initramfs, machine: 'auto', accel: 'tcg', network: 'tap', runDir, pool });
    const program = makeProgram([]);
    program.launch = { kind: 'vm', code, entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false };
    const taps = () => execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n').filter((l) => / aeqt\d+[:@]/.test(l));
    const instance = await driver.start(program, nextSlot());
    try {
      assert.deepEqual(instance.endpoint, { kind: 'tcp', host: '10.213.11.2', port: 8080 });
      assert.equal(taps().length, 1);
      await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 30_000 });
      assert.equal((await httpGet(instance.endpoint, '/index.html')).body, 'hello from the guest\n');
    } finally {
      await instance.stop();
    }
    assert.equal((await instance.exited).requested, true);
    assert.deepEqual(taps(), []);
    assert.deepEqual(await readdir(runDir), []);
    assert.deepEqual(await readdir(stateDir), []);
  });

  it('makes the guest API reachable: tap at the host address; the link goes with the VM', { skip: netnsSkipReason() || false }, async () => {
    const api = await standInGuestApi(join(guest.dir, 'guest-api-tap.sock'));
    const runDir = join(guest.dir, 'api-vms');
    try {
      const driver = new QemuDriver({
        stopGraceMs: 3000, binary: 'qemu-system-x86_64', kernel: guest.kernel.vmlinuz, initramfs: guest.initramfs, machine: 'auto', accel: 'tcg', network: 'tap', runDir,
        pool: new NetworkPool({ pool: '10.213.11.8/30', prefix: 30, tapPrefix: 'aeqa', stateDir: join(guest.dir, 'api-net'), outboundInterface: '' }),
      });
      const program = guestApiProgram();
      const before = tcpListeners('10.213.11.9', { ownOnly: true }).length;
      const instance = await driver.start(program, { ...nextSlot(), guestApi: { socket: api.socket } });
      try {
        assert.equal(tcpListeners('10.213.11.9', { ownOnly: true }).length, before + 1, 'the link listens on the tap\'s host address');
        assert.deepEqual(instance.guestApi, { kind: 'tcp', host: '10.213.11.9', port: (instance.guestApi as { port: number }).port });
        const vars = await guestApiCall(instance.endpoint, program.sender!);
        assert.match(vars.ALEPH_API_HOST ?? '', /^http:\/\/10\.213\.11\.9:\d+$/);
        assert.ok(api.requests.includes('GET /cache/get/probe'));
      } finally {
        await instance.stop();
      }
      assert.equal(tcpListeners('10.213.11.9', { ownOnly: true }).length, before, 'the link closed with the VM');
      assert.deepEqual(await readdir(runDir), []);
    } finally {
      await api.close();
    }
  });

  it('user networking: each VM reaches its own guest API through a unix socket of its own; no loopback port, nobody is refused', async () => {
    const apis = await Promise.all(['a', 'b'].map((name) => standInGuestApi(join(guest.dir, `guest-api-${name}.sock`), `answered by ${name}`)));
    const runDir = join(guest.dir, 'api-user-vms');
    try {
      const driver = new QemuDriver({ stopGraceMs: 3000, binary: 'qemu-system-x86_64', kernel: guest.kernel.vmlinuz, initramfs: guest.initramfs, machine: 'auto', accel: 'tcg', network: 'user', runDir });
      const loopbackBefore = tcpListeners(GUEST_API_LOOPBACK, { ownOnly: true }).length;
      const program = guestApiProgram();
      // Two VMs at once: the guests use the same address (10.0.2.100:80); each VM's forward goes to its own socket.
      const instances = await Promise.all(apis.map((api) => driver.start(program, { ...nextSlot(), guestApi: { socket: api.socket } })));
      try {
        assert.equal(tcpListeners(GUEST_API_LOOPBACK, { ownOnly: true }).length, loopbackBefore, 'no loopback TCP link any local user could reach');
        const links = instances.map((instance) => {
          assert.equal(instance.guestApi?.kind, 'unix', 'the instance reports its unix guest link');
          return (instance.guestApi as { path: string }).path;
        });
        for (const path of links) {
          assert.ok(path.startsWith(runDir + '/'), `${path} is in the VM's own folder`);
          assert.equal(statSync(dirname(path)).mode & 0o777, 0o700, 'the VM folder is the node user\'s alone');
          assert.equal(statSync(path).mode & 0o777, 0o600);
          assert.equal(nobodyConnects(path), '13', `nobody opened ${path}`);
        }
        const answers = await Promise.all(instances.map((instance) => guestApiCall(instance.endpoint, program.sender!)));
        answers.forEach((vars, i) => {
          assert.equal(vars.ALEPH_API_HOST, 'http://10.0.2.100');
          assert.equal(vars.answer, `answered by ${['a', 'b'][i]}`, `VM ${i} reached its own guest API`);
        });
        for (const api of apis) assert.deepEqual(api.requests, ['GET /cache/get/probe'], 'each guest API was called by its own VM only');
      } finally {
        await Promise.all(instances.map((instance) => instance.stop()));
      }
      for (const path of [...apis.map((a) => a.socket)]) assert.ok(existsSync(path), 'the guest API sockets are not the driver\'s to remove');
      assert.deepEqual(await readdir(runDir), [], 'the links\' sockets went with their VMs');
    } finally {
      await Promise.all(apis.map((api) => api.close()));
    }
  });

  it("user networking with internet: reaches outside, never the host's loopback at 10.0.2.2; the node still reaches it", { skip: netnsSkipReason() || pastaSkipReason() || false }, async () => {
    const outside = await startOutside('aeis2q', '203.0.113');
    // A service on the host's loopback, as Redis, a local program or another VM's forwarded port would be.
    const secret = net.createServer((socket) => socket.end('host loopback secret\n'));
    await new Promise<void>((resolve) => secret.listen(0, '127.0.0.1', resolve));
    const secretPort = (secret.address() as net.AddressInfo).port;
    const runDir = join(guest.dir, 'internet-vms');
    const namespaces = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((line) => line.split(' ')[0]);
    let folder: string | undefined;
    try {
      const driver = new QemuDriver({ stopGraceMs: 3000, binary: 'qemu-system-x86_64', kernel: guest.kernel.vmlinuz, initramfs: guest.initramfs, machine: 'auto', accel: 'tcg', network: 'user', runDir });
      const program = makeProgram([]);
      program.launch = { kind: 'vm', code, entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: true };
      const instance = await driver.start(program, nextSlot());
      try {
        await waitForHttp(instance.endpoint, { path: '/', deadline: Date.now() + 60_000 });
        const connect = async (host: string, port: number) => (await httpGet(instance.endpoint, `/cgi-bin/connect?${host}:${port}`)).body;
        assert.match(await connect(outside.ip, outside.port), /^connected$/m, 'the guest reaches outside');
        assert.doesNotMatch(await connect('10.0.2.2', secretPort), /host loopback secret/, "the guest read a service on the host's loopback");
        assert.equal((await httpGet(instance.endpoint, '/index.html')).body, 'hello from the guest\n', 'the node reaches the VM through its forwarded port');
        [folder] = await readdir(runDir);
        assert.ok(namespaces().includes(`aleph-edge-${folder}`), 'qemu runs in a namespace of its own');
      } finally {
        await instance.stop();
      }
      assert.deepEqual(await readdir(runDir), []);
      assert.ok(!namespaces().includes(`aleph-edge-${folder}`), "the VM's namespace went with it");
    } finally {
      secret.close();
      await outside.close();
    }
  });

  it('closes the guest-link when the start fails', async () => {
    const driver = new QemuDriver({ stopGraceMs: 100, binary: 'qemu-system-x86_64', kernel: guest.kernel.vmlinuz, initramfs: guest.initramfs, machine: 'auto', accel: 'tcg', network: 'user', runDir: join(guest.dir, 'failed-vms') });
    const program = makeProgram([]);
    program.launch = { kind: 'vm', code: join(guest.dir, 'no-such-code'), entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false };
    const before = tcpListeners(GUEST_API_LOOPBACK, { ownOnly: true }).length;
    await assert.rejects(driver.start(program, { ...nextSlot(), guestApi: { socket: join(guest.dir, 'unused.sock') } }), /no-such-code does not exist/);
    assert.equal(tcpListeners(GUEST_API_LOOPBACK, { ownOnly: true }).length, before);
    assert.deepEqual(await readdir(join(guest.dir, 'failed-vms')), []);
  });

  it('says what is missing when the host has no socat for the user-mode forward', async () => {
    const runDir = join(guest.dir, 'nosocat-vms');
    const driver = new QemuDriver({ stopGraceMs: 100, binary: 'qemu-system-x86_64', kernel: guest.kernel.vmlinuz, initramfs: guest.initramfs, machine: 'auto', accel: 'tcg', network: 'user', runDir });
    const program = makeProgram([]);
    program.launch = { kind: 'vm', code, entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false };
    const path = process.env.PATH;
    process.env.PATH = join(guest.dir, 'empty-path');
    try {
      await assert.rejects(driver.start(program, { ...nextSlot(), guestApi: { socket: join(guest.dir, 'unused.sock') } }),
        (err: Error) => err instanceof DriverStartError && /needs socat on the host \(apt install socat\)/.test(err.message));
    } finally {
      process.env.PATH = path;
    }
    assert.deepEqual(await readdir(runDir), []);
  });

  it('refuses a program without a VM image', async () => {
    const driver = new QemuDriver({ stopGraceMs: 100, binary: 'qemu-system-x86_64', kernel: guest.kernel.vmlinuz, initramfs: guest.initramfs, machine: 'auto', accel: 'tcg', network: 'user', runDir: join(guest.dir, 'unused') });
    await assert.rejects(driver.start(makeProgram(['node', 'x.js']), nextSlot()), (err: Error) => err instanceof DriverStartError && /has no VM image/.test(err.message));
  });
});
