// aleph-edge started the way systemd starts it from aleph-edge.socket and
// aleph-edge-http.socket: listening sockets passed as fds 3.. with LISTEN_FDS,
// LISTEN_PID and LISTEN_FDNAMES. systemd-socket-activate (systemd package) binds the
// sockets, waits for the first connection, then execs the command in its own
// process, so LISTEN_PID is the node's pid; it passes only TERM/PATH/USER/HOME
// through, anything else needs -E.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { CLI, example } from '../helpers/paths.js';
import { programHash } from '../helpers/node.js';
import { childrenOf, freePort, get, guestLinks, processesMatching, startCliNode, tcpListeners, waitReady, type CliNode } from '../chaos/harness.js';

function which(command: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(0, '::1', () => server.close(() => resolve(true)));
  });
}

const activate = which('systemd-socket-activate');

// workers = 1: one process; workers = 2: the primary hands the inherited fds to its workers.
for (const workers of [1, 2]) describe(`socket activation through systemd-socket-activate (workers = ${workers})`, { skip: activate ? false : 'systemd-socket-activate not installed (.ci/setup.d/systemd.sh)' }, () => {
  let node: CliNode;
  const ports = { https: 0, http: 0, https6: 0, configHttps: 0, configHttp: 0 };
  let v6 = false;
  const echo = programHash('echo');

  before(async () => {
    v6 = await ipv6Loopback();
    ports.https = await freePort();
    ports.http = await freePort();
    ports.https6 = v6 ? await freePort('::1') : 0;
    ports.configHttps = await freePort();
    ports.configHttp = await freePort();
    const listen = ['-l', `127.0.0.1:${ports.https}`, ...(v6 ? ['-l', `[::1]:${ports.https6}`] : []), '-l', `127.0.0.1:${ports.http}`];
    const names = v6 ? 'https:https:http' : 'https:http';
    node = await startCliNode({
      workers,
      programs: [{ name: 'echo', script: example('echo') }],
      // The config names other ports: with inherited fds they must stay unbound.
      ports: { https: ports.configHttps, http: ports.configHttp },
      noWait: true,
      wrap: (argv) => ({
        command: activate!,
        args: [...listen, `--fdname=${names}`, '-E', `ALEPH_EDGE_LOG=${process.env.ALEPH_EDGE_LOG ?? 'warn'}`, process.execPath, ...argv],
      }),
    });
    // It binds first (retry until it does), then execs the node on the first connection.
    let trigger: net.Socket | undefined;
    for (let attempt = 0; !trigger; attempt++) {
      const socket = net.connect(ports.http, '127.0.0.1');
      const ok = await new Promise<boolean>((resolve) => { socket.once('connect', () => resolve(true)); socket.once('error', () => resolve(false)); });
      if (ok) trigger = socket;
      else if (attempt > 200) throw new Error(`systemd-socket-activate did not listen: ${node.stderr()}`);
      else await new Promise((r) => setTimeout(r, 25));
    }
    await waitReady(node);
    trigger.destroy();
    node.httpsPort = ports.https;
    node.httpPort = ports.http;
  });

  after(async () => {
    await node?.stop();
  });

  it('serves HTTPS through the inherited socket and proxies to a program', async () => {
    const reply = await get(node, `/vm/${echo}/hello`);
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['aleph-program-itemhash'], echo);
    assert.equal((JSON.parse(reply.body) as { path: string }).path, '/hello');
  });

  it('serves HTTPS on the inherited IPv6 socket too', { skip: false }, async (t) => {
    if (!v6) return t.skip('no IPv6 loopback');
    const reply = await new Promise<number>((resolve, reject) => {
      import('node:https').then(({ default: https }) => {
        https.get({ host: '::1', port: ports.https6, servername: node.domain, ca: node.ca, path: '/', headers: { host: node.domain }, agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        }).on('error', reject);
      }, reject);
    });
    assert.equal(reply, 200);
  });

  it('answers plain HTTP on the fd named "http" with a redirect to https', async () => {
    const location = await new Promise<string | undefined>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: ports.http, path: '/x?y=1', headers: { host: node.domain }, agent: false }, (res) => {
        res.resume();
        assert.equal(res.statusCode, 301);
        resolve(res.headers.location);
      }).on('error', reject);
    });
    assert.equal(location, `https://${node.domain}:${ports.https}/x?y=1`);
  });

  it('listens only on the passed fds (LISTEN_PID matched the exec\'d node), not on the configured addresses', () => {
    const expected = [`127.0.0.1:${ports.https}`, `127.0.0.1:${ports.http}`, ...(v6 ? [`[::1]:${ports.https6}`] : [])].sort();
    // The primary holds the passed fds (and the guest-link of the running program); workers
    // listen on the same sockets, never on others.
    assert.deepEqual(tcpListeners(node.child.pid!), [...expected, ...guestLinks(node.socket)].sort());
    const workerPids = childrenOf(node.child.pid!).filter((pid) => processesMatching(CLI).includes(pid));
    assert.equal(workerPids.length, workers === 1 ? 0 : workers);
    for (const pid of workerPids) assert.ok(tcpListeners(pid).every((l) => expected.includes(l)), `worker ${pid}: ${tcpListeners(pid).join(' ')}`);
  });

  it('the status socket reports the fd listeners, and SIGTERM drains with exit 0', async () => {
    const status = JSON.parse(execFileSync(process.execPath, [new URL('../../src/cli.js', import.meta.url).pathname, 'status', '--socket', node.socket, '--json'], { encoding: 'utf8' })) as { listeners: unknown[] };
    // Passed as fds 3.. in the order of the -l options.
    assert.deepEqual(status.listeners, [
      { protocol: 'https', address: '127.0.0.1', port: ports.https, fd: 3 },
      ...(v6 ? [{ protocol: 'https', address: '::1', port: ports.https6, fd: 4 }] : []),
      { protocol: 'http', address: '127.0.0.1', port: ports.http, fd: v6 ? 5 : 4 },
    ]);
    assert.equal(await node.stop(), 0);
  });
});
