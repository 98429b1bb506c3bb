// kill -9 of aleph-edge (primary, with workers) during traffic and while it writes
// new certificates. Programs run in their own process groups, so they outlive a
// SIGKILLed node; the restarted node must kill them (process driver records), take
// over the stale status socket, and serve only intact certificates.
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, describe, it } from 'node:test';
import { hashToLabel } from '../../src/common/hash.js';
import { StatusClient } from '../../src/status/index.js';
import { CLI, example, fixtureProgram } from '../helpers/paths.js';
import { programHash, until } from '../helpers/node.js';
import { childrenOf, freePort, get, processesMatching, running, sleep, startCliNode, waitReady, type CliNode } from './harness.js';

async function certFolders(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const sub = path.join(dir, entry.name);
      if ((await readdir(sub)).includes('cert.pem') && entry.name !== 'internal') out.push(sub);
      else await walk(sub);
    }
  };
  await walk(root);
  return out;
}

async function tempFiles(root: string): Promise<number> {
  let count = 0;
  for (const entry of await readdir(root, { recursive: true })) if (String(entry).endsWith('.tmp')) count++;
  return count;
}

describe('kill -9 of aleph-edge', () => {
  let dir: string;
  let node: CliNode | undefined;

  after(async () => {
    await node?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('during traffic and certificate writes: no orphan after restart, stale socket replaced, only intact certificates', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-'));
    const ports = { https: await freePort(), http: await freePort() };
    const options = {
      dir, ports, workers: 2,
      programs: [
        { name: 'counter', script: example('counter') },
        { name: 'echo', script: example('echo') },
        { name: 'forker', script: fixtureProgram('chaos-bad.js'), env: { BEHAVIOR: 'forker' } },
      ],
    };
    node = await startCliNode(options);
    const status = new StatusClient(node.socket);
    const counter = programHash('counter');
    const forker = programHash('forker');
    await get(node, `/vm/${counter}/state/increment`);
    await get(node, `/vm/${programHash('echo')}/`);
    const [, leader, grandchild] = (await get(node, `/vm/${forker}/`)).body.split(' ').map(Number);
    const programPids = [...(await status.vms()).map((v) => v.pid!), grandchild!];
    assert.equal(programPids.length, 4);
    assert.ok(programPids.includes(leader!));
    const workerPids = childrenOf(node.child.pid!).filter((pid) => processesMatching(CLI).includes(pid));
    assert.equal(workerPids.length, 2);

    // Traffic: program requests plus new base32 hosts (each one a certificate issued and written).
    let stop = false;
    let sent = 0;
    const traffic = async () => {
      while (!stop) {
        const host = `${hashToLabel(randomBytes(32).toString('hex'))}.${node!.domain}`;
        await Promise.allSettled([
          get(node!, `/vm/${counter}/state/increment`, { timeoutMs: 3000 }),
          get(node!, '/', { host, timeoutMs: 3000 }),
        ]);
        sent += 2;
      }
    };
    const loops = [traffic(), traffic(), traffic()];
    await sleep(1200);
    const killedAt = performance.now();
    node.child.kill('SIGKILL');
    await new Promise((r) => node!.child.once('exit', r));
    await sleep(200);
    stop = true;
    await Promise.all(loops);
    const survivors = programPids.filter(running);
    await until(() => workerPids.every((pid) => !running(pid)), 5000, 'the workers to exit after their primary died');
    const certsBefore = (await certFolders(path.join(dir, 'certs'))).length;
    const temps = await tempFiles(path.join(dir, 'certs'));

    // Restart on the same folder and ports; the stale status socket file is still there.
    const restartAt = performance.now();
    node = await startCliNode({ ...options, noWait: true });
    await until(async () => {
      if (node!.child.exitCode !== null) throw new Error(`restart failed: ${node!.stderr()}`);
      try {
        return (await status.status()).version !== undefined;
      } catch {
        return false;
      }
    }, 15_000, 'the restarted node\'s status socket');
    await waitReady(node);
    const readyAfter = (performance.now() - restartAt) / 1000;
    await until(() => programPids.every((pid) => !running(pid)), 5000, 'the previous node\'s programs to be killed');
    const reapedAfter = (performance.now() - restartAt) / 1000;

    // Serving again, with fresh programs (the counter starts over).
    assert.equal((await get(node, `/vm/${counter}/state/increment`)).body.trim(), '1');
    const after = await status.vms();
    assert.ok(after.every((v) => !programPids.includes(v.pid!)));

    // Every stored certificate is intact (parses, matches its key) and is served for its host.
    const folders = await certFolders(path.join(dir, 'certs'));
    let served = 0;
    for (const folder of folders) {
      const cert = new X509Certificate(await readFile(path.join(folder, 'cert.pem')));
      const key = createPrivateKey(await readFile(path.join(folder, 'key.pem')));
      assert.ok(cert.checkPrivateKey(key), `${folder}: key does not match`);
      const host = path.basename(folder);
      if (host === node.domain || !host.endsWith(node.domain)) continue;
      if (served >= 20) continue;
      await new Promise<void>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: node!.httpsPort, servername: host, ca: node!.ca }, () => {
          socket.destroy();
          resolve();
        });
        socket.once('error', (e) => reject(new Error(`${host}: ${e.message}`)));
      });
      served++;
    }
    process.stdout.write(`# kill -9: ${sent} requests in flight around the kill; programs alive after kill -9: ${survivors.length}/${programPids.length} (incl. a grandchild); ` +
      `workers exited with their primary; restarted node ready in ${readyAfter.toFixed(1)} s (stale socket replaced), orphans killed ${reapedAfter.toFixed(1)} s after restart; ` +
      `certificates on disk ${certsBefore} (leftover temp files ${temps}), all intact, ${served} handshakes checked after restart; killed ${((restartAt - killedAt) / 1000).toFixed(1)} s before restart\n`);
    assert.equal(await node.stop(), 0);
    node = undefined;
  });
});
