// The ACME account: registered once with external account binding (Pebble requiring
// EAB), its key stored 0600 in the storage folder and reused after a restart.

import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { issuerNameFor } from '../../src/tls/acme-account.js';
import { handshake, startAcmeNode, usePebble, type Pebble, type TempDir } from './acme-harness.js';

const KID = 'kid-1';
const HMAC = 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W';

describe('acme account with external account binding', () => {
  let pebble: Pebble;
  let root: string;
  let work: TempDir;
  usePebble('aleph-edge-acme-account-', { eab: { [KID]: HMAC } }, (env) => ({ pebble, root, work } = env));

  it('registers with EAB, keeps the key 0600 and reuses it after a restart', async () => {
    const storage = path.join(work.dir, 'certs');
    const eab = ['[tls.eab]', `kid = "${KID}"`, `hmac_key = "${HMAC}"`];
    const accounts = path.join(storage, issuerNameFor(pebble.directory), '_accounts');
    const run = async (host: string) => {
      const n = await startAcmeNode({ pebble, dir: work.dir, storage, hosts: [host], tls: eab });
      try {
        const result = await handshake(n.httpsPort, host, root);
        assert.ok(result.ok, result.ok ? '' : result.error.message);
      } finally {
        await n.close();
      }
    };
    await run('one.account.test');
    const [folder] = await readdir(accounts);
    const keyPath = path.join(accounts, folder!, 'account.key');
    const key = await readFile(keyPath, 'utf8');
    assert.equal((await stat(keyPath)).mode & 0o777, 0o600);
    const url = JSON.parse(await readFile(path.join(accounts, folder!, 'account.json'), 'utf8')).url as string;
    await run('two.account.test');
    assert.equal(await readFile(keyPath, 'utf8'), key, 'same key after a restart');
    assert.equal(JSON.parse(await readFile(path.join(accounts, folder!, 'account.json'), 'utf8')).url, url);
    // One registration, bound to the kid; the restart reused the stored account.
    assert.equal((pebble.log().match(new RegExp(`Successful newAccount Binding with CA using kid "${KID}"`, 'g')) ?? []).length, 1);
  });

  it('without the binding the CA refuses the account and no certificate is served', async () => {
    const n = await startAcmeNode({ pebble, dir: work.dir, storage: path.join(work.dir, 'no-eab'), hosts: ['noeab.account.test'] });
    try {
      assert.equal((await handshake(n.httpsPort, 'noeab.account.test', root)).ok, false);
    } finally {
      await n.close();
    }
  });
});
