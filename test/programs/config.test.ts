// The [programs] keys of source = "aleph".

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/index.js';

const FILE = '/etc/aleph-edge/aleph-edge.toml';
const HEAD = '[server]\ndomain = "x.test"\n[tls]\nmode = "internal"\n';

describe('config: programs from the Aleph network', () => {
  it('source = "aleph" gets the defaults; a local config has no aleph settings', () => {
    const aleph = parseConfig(`${HEAD}[programs]\nsource = "aleph"\n`, FILE).programs.aleph;
    assert.deepEqual(aleph, {
      cacheDir: '/var/cache/aleph-edge/programs',
      cacheMaxBytes: 10 * 1024 ** 3,
      maxCodeBytes: 10 * 1024 ** 2,
      maxDataBytes: 10 * 1024 ** 2,
      maxRuntimeBytes: 2 * 1024 ** 3,
      maxVolumeBytes: 2 * 1024 ** 3,
      maxRootfsBytes: 10 * 1024 ** 3,
      volumesDir: '/var/lib/aleph-edge/volumes',
      ipfsGateway: 'https://ipfs.aleph.im',
      downloadTimeoutMs: 120_000,
      downloadRetries: 3,
      allowProcessForNetwork: false,
      subscribe: true,
    });
    assert.equal(parseConfig(HEAD, FILE).programs.aleph, undefined);
  });

  it('reads every key; relative paths resolve against the config file', () => {
    const aleph = parseConfig(`${HEAD}[programs]
source = "aleph"
cache_dir = "cache"
cache_max_size = "1GiB"
max_code_size = "1MiB"
max_data_size = "2MiB"
max_runtime_size = "100MiB"
max_volume_size = "200MiB"
volumes_dir = "/srv/volumes"
ipfs_gateway = "http://127.0.0.1:8080"
download_timeout = "30s"
download_retries = 0
allow_process_for_network = true
subscribe = false
`, FILE).programs.aleph!;
    assert.equal(aleph.cacheDir, '/etc/aleph-edge/cache');
    assert.equal(aleph.cacheMaxBytes, 1024 ** 3);
    assert.equal(aleph.maxCodeBytes, 1024 ** 2);
    assert.equal(aleph.maxDataBytes, 2 * 1024 ** 2);
    assert.equal(aleph.maxRuntimeBytes, 100 * 1024 ** 2);
    assert.equal(aleph.maxVolumeBytes, 200 * 1024 ** 2);
    assert.equal(aleph.volumesDir, '/srv/volumes');
    assert.equal(aleph.ipfsGateway, 'http://127.0.0.1:8080');
    assert.equal(aleph.downloadTimeoutMs, 30_000);
    assert.equal(aleph.downloadRetries, 0);
    assert.equal(aleph.allowProcessForNetwork, true);
    assert.equal(aleph.subscribe, false);
  });

  it('wrong types and unknown keys are errors with their line', () => {
    const text = `${HEAD}[programs]\nsource = "aleph"\nallow_process_for_network = "yes"\nmax_code_size = "lots"\ncache_dirr = "x"\n`;
    assert.throws(() => parseConfig(text, FILE), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      const text = error.format();
      assert.match(text, /:7:1: programs\.allow_process_for_network: expected true or false/);
      assert.match(text, /:8:1: programs\.max_code_size: /);
      assert.match(text, /:9:1: programs\.cache_dirr: unknown key/);
      return true;
    });
  });
});
