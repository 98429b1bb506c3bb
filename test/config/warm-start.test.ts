// Config of the warm starts: [orchestrator] prewarm, [drivers.qemu] prewarm_* (the warm
// pool, docs/warm-pool.md) and [drivers.process] fork_server (docs/drivers.md).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, formatIssue, parseConfig } from '../../src/config/index.js';

const FILE = '/etc/aleph-edge/aleph-edge.toml';
const BASE = '[server]\ndomain = "vm.example.org"\n[tls]\nmode = "internal"\n';

/** Parsing `text` after BASE fails with exactly this one issue. */
function refused(text: string, issue: string): void {
  assert.throws(() => parseConfig(`${BASE}${text}`, FILE), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.issues.map((i) => formatIssue(i)), [`${FILE}:${issue}`]);
    return true;
  });
}

describe('warm-start settings', () => {
  it('default to no pool and no fork server', () => {
    const settings = parseConfig(`${BASE}[drivers.qemu]\n`, FILE);
    assert.equal(settings.orchestrator.prewarm, 0);
    assert.deepEqual(settings.drivers!.qemu.prewarm, { runtime: '', memoryMib: 128, vcpus: 1, preload: ['fastapi'] });
    assert.equal(settings.drivers!.process.forkServer, false);
  });

  it('reads the pool size, the warm VMs\' shape (runtime resolved against the file) and the fork server', () => {
    const settings = parseConfig(`${BASE}[orchestrator]\nprewarm = 2\n[drivers.qemu]\nprewarm_runtime = "runtimes/default.squashfs"\nprewarm_memory_mib = 256\nprewarm_vcpus = 2\nprewarm_preload = ["pydantic", "my_lib.core"]\n[drivers.process]\nfork_server = true\n`, FILE);
    assert.equal(settings.orchestrator.prewarm, 2);
    assert.deepEqual(settings.drivers!.qemu.prewarm, { runtime: '/etc/aleph-edge/runtimes/default.squashfs', memoryMib: 256, vcpus: 2, preload: ['pydantic', 'my_lib.core'] });
    assert.equal(settings.drivers!.process.forkServer, true);
  });

  it('refuses bad values and unknown keys with their line', () => {
    refused('[orchestrator]\nprewarm = -1\n', '6:1: orchestrator.prewarm: must be at least 0, got -1');
    refused('[drivers.qemu]\nprewarm_memory_mib = 8\n', '6:1: drivers.qemu.prewarm_memory_mib: must be at least 16, got 8');
    refused('[drivers.process]\nfork_server = "yes"\n', '6:1: drivers.process.fork_server: expected true or false, got string');
    // Module names go on the guest kernel's command line: nothing else passes.
    refused('[drivers.qemu]\nprewarm_preload = ["fastapi", "x y"]\n', '6:31: drivers.qemu.prewarm_preload[1]: "x y" is not a Python module name');
    refused('[drivers.qemu]\nprewarm_preload = ["a=b"]\n', '6:20: drivers.qemu.prewarm_preload[0]: "a=b" is not a Python module name');
    refused('[orchestrator]\nprewarm_vms = 1\n', '6:1: orchestrator.prewarm_vms: unknown key');
  });
});
