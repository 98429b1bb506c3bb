// Config checks for the firecracker driver: Firecracker 1.16's API limits and the
// one boot layout it supports, reported with file:line at check-config rather than
// as a 400 at the first boot.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, formatIssue, parseConfig } from '../../src/config/index.js';

const FILE = '/etc/aleph-edge/aleph-edge.toml';
const BASE = '[server]\ndomain = "vm.example.org"\n[tls]\nmode = "internal"\n';

function issues(text: string): string[] {
  try {
    parseConfig(text, FILE);
    return [];
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error.issues.map((issue) => formatIssue(issue));
  }
}

const program = (vcpus: number, memory = 128) =>
  `[[programs.local]]\nname = "p"\nhash = "${'a'.repeat(64)}"\ncommand = ["true"]\nvcpus = ${vcpus}\nmemory_mib = ${memory}\n`;

describe('firecracker limits at check-config', () => {
  it('vcpus must be 1-32 with the firecracker driver (machine-config vcpu_count)', () => {
    const text = `${BASE}[orchestrator]\ndriver = "firecracker"\n${program(33)}`;
    assert.deepEqual(issues(text), [`${FILE}:11:1: programs.local[0].vcpus: must be at most 32 with the firecracker driver (machine-config vcpu_count is 1-32), got 33`]);
    assert.deepEqual(issues(`${BASE}[orchestrator]\ndriver = "firecracker"\n${program(32)}`), []);
    assert.deepEqual(issues(`${BASE}[orchestrator]\ndriver = "qemu"\n${program(33)}`), [], 'other drivers have their own limits');
    assert.match(issues(`${BASE}[orchestrator]\ndriver = "firecracker"\n${program(1, 0)}`)[0] ?? '', /memory_mib: must be a positive integer, got 0/);
  });

  it('extra_boot_args must fit the 2048-byte command line with ours and Firecracker\'s device entries', () => {
    const long = `${BASE}[drivers.firecracker]\nextra_boot_args = "${'x'.repeat(1400)}"\n`;
    assert.match(issues(long)[0] ?? '', new RegExp(`^${FILE}:6:1: drivers\\.firecracker\\.extra_boot_args: is 1400 bytes; Firecracker's kernel command line \\(2048 bytes with its NUL\\) leaves \\d+ after`));
    assert.deepEqual(issues(`${BASE}[drivers.firecracker]\nextra_boot_args = "loglevel=7 ${'x'.repeat(1000)}"\n`), []);
  });

  it('extra_boot_args may not contradict the boot layout (root=, init=, virtio_mmio.device=, aleph.*)', () => {
    for (const arg of ['root=/dev/vda', 'init=/sbin/init', 'rdinit=/x', 'virtio_mmio.device=4K@0xd0000000:5', 'aleph.ip=1.2.3.4/30']) {
      assert.match(issues(`${BASE}[drivers.firecracker]\nextra_boot_args = "quiet ${arg}"\n`)[0] ?? '', /^.*:6:1: drivers\.firecracker\.extra_boot_args: ".*": /, arg);
    }
  });

  it('rootfs is the default runtime, not a root device', () => {
    const settings = parseConfig(`${BASE}[drivers.firecracker]\ninitramfs = "/i"\nrootfs = "/r.squashfs"\n`, FILE);
    assert.equal(settings.drivers?.firecracker.rootfs, '/r.squashfs');
  });

  it('reads cgroup_root relative to the config file', () => {
    const settings = parseConfig(`${BASE}[drivers.firecracker]\ncgroup_root = "cg"\n`, FILE);
    assert.equal(settings.drivers?.firecracker.cgroupRoot, '/etc/aleph-edge/cg');
    assert.equal(settings.drivers?.firecracker.extraBootArgs, '');
  });
});
