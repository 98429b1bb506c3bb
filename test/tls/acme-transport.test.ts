// How the node talks to the ACME server under a burst of new hosts: kept-alive TLS
// connections and one parsed trust store. Before, every nonce fetch (HEAD, whose
// answer has no Content-Length) made Node drop the connection, and every new
// connection re-parsed the ~150 roots of tls.directory_ca's bundle: a burst of 40
// orders cost the primary 8 s of CPU and delayed the first certificate of the
// chaos kill -9 test past 30 s on a loaded 2-core machine.

import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { describe, it } from 'node:test';
import { handshake, startAcmeNode, usePebble, type Pebble, type TempDir } from './acme-harness.js';

/** A TCP forwarder in front of Pebble's API that counts the connections made to it (TLS passes through untouched). */
async function countingForwarder(target: URL): Promise<{ directory: string; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    connections++;
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    // Pebble builds its URLs from the Host header, so every later request comes here too.
    directory: `https://127.0.0.1:${port}${target.pathname}`,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('ACME transport under a burst of new hosts', () => {
  let pebble: Pebble;
  let root: string;
  let work: TempDir;
  usePebble('aleph-edge-acme-transport-', {}, (env) => ({ pebble, root, work } = env));

  it('20 concurrent orders reuse kept-alive connections and never re-parse the trust store', async () => {
    const forwarder = await countingForwarder(new URL(pebble.directory));
    const hosts = Array.from({ length: 20 }, (_, i) => `app${i}.burst.test`);
    // Trust stores parsed while the orders run: createSecureContext with the system roots
    // (the test's own handshakes pass Pebble's root alone).
    const original = tls.createSecureContext;
    let caParses = 0;
    const node = await startAcmeNode({
      pebble: { ...pebble, directory: forwarder.directory }, dir: work.dir, storage: path.join(work.dir, 'burst-certs'), hosts,
      tls: ['issue_rate = { burst = 100, interval = "60s" }'],
      issueWaitMs: 60_000,
    });
    try {
      // The account first (one order), so the burst measures orders only.
      assert.ok((await handshake(node.httpsPort, hosts[0]!, root)).ok);
      const before = forwarder.connections();
      tls.createSecureContext = function (options?: tls.SecureContextOptions) {
        if (Array.isArray(options?.ca) && options.ca.includes(tls.rootCertificates[0]!)) caParses++;
        return original.call(this, options);
      };
      const results = await Promise.all(hosts.slice(1).map((host) => handshake(node.httpsPort, host, root)));
      tls.createSecureContext = original;
      const failed = results.filter((r) => !r.ok).map((r) => (r.ok ? '' : r.error.message));
      assert.deepEqual(failed, [], 'every host got its certificate');
      const connections = forwarder.connections() - before;
      process.stdout.write(`# acme transport: ${hosts.length - 1} concurrent orders (about 12 ACME requests each): ${connections} new connections to the CA, trust store parsed ${caParses} times\n`);
      // At most one connection per order running at once (and a few to spare); one per request before.
      assert.ok(connections <= hosts.length + 5, `${connections} connections to the CA for ${hosts.length - 1} orders`);
      assert.equal(caParses, 0, 'the trust store is parsed once, not per connection');
    } finally {
      tls.createSecureContext = original;
      await node.close();
      await forwarder.close();
    }
  });
});
