// A qemu node that runs instances only: instances boot their own kernel from their
// disk, so [drivers.qemu] without kernel and initramfs is a valid configuration; the
// driver starts, and a program (which needs them) is refused at its start with the
// reason. One of the two set without the other is still a start-up error. The whole
// node on such a configuration: test/instances/start-refused.test.ts and boot.test.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/index.js';
import { checkQemuOptions, createDriver, DriverStartError } from '../../src/drivers/index.js';
import { qemuSkipReason } from '../drivers/qemu-guest.js';
import { makeProgram, nextSlot } from '../drivers/helpers.js';

const CONFIG = [
  '[server]', 'domain = "edge.test"', '[tls]', 'mode = "internal"',
  '[orchestrator]', 'driver = "qemu"',
  '[drivers.qemu]', 'accel = "tcg"', 'run_dir = "/tmp/aein2-unused"',
  '[programs]', 'source = "aleph"',
].join('\n') + '\n';

describe('a qemu node for instances only', { skip: qemuSkipReason() || false }, () => {
  it('loads without drivers.qemu.kernel and initramfs, and its driver starts', () => {
    const settings = parseConfig(CONFIG, '/etc/aleph-edge/aleph-edge.toml');
    const qemu = settings.drivers!.qemu;
    assert.equal(qemu.kernel, '');
    assert.equal(qemu.initramfs, '');
    assert.deepEqual(checkQemuOptions({ ...qemu, stopGraceMs: 1000 }), []);
    assert.equal(createDriver('qemu', { stopGraceMs: 1000, drivers: settings.drivers }).name, 'qemu');
  });

  it('refuses a program at its start, saying what it needs', async () => {
    const driver = createDriver('qemu', { stopGraceMs: 1000, drivers: parseConfig(CONFIG, '/c.toml').drivers });
    const program = makeProgram([]);
    program.launch = { kind: 'vm', code: '', entrypoint: '/app/start', env: {}, kernel: '', initramfs: '', internet: false };
    await assert.rejects(driver.start(program, nextSlot()), (err: unknown) => {
      assert.ok(err instanceof DriverStartError);
      assert.match(err.message, /runs instances only: programs need drivers\.qemu\.kernel and drivers\.qemu\.initramfs/);
      return true;
    });
  });

  it('one of kernel and initramfs without the other is still an error naming the missing one', () => {
    const settings = parseConfig(CONFIG.replace('accel = "tcg"', 'accel = "tcg"\nkernel = "/boot/vmlinuz-missing"'), '/c.toml');
    const problems = checkQemuOptions({ ...settings.drivers!.qemu, stopGraceMs: 1000 });
    assert.ok(problems.some((p) => /drivers\.qemu\.initramfs is not set/.test(p)), problems.join('; '));
    assert.ok(problems.some((p) => /drivers\.qemu\.kernel: \/boot\/vmlinuz-missing does not exist/.test(p)), problems.join('; '));
    assert.throws(() => createDriver('qemu', { stopGraceMs: 1000, drivers: settings.drivers }), /the qemu driver cannot start: .*drivers\.qemu\.initramfs is not set/);
  });
});
