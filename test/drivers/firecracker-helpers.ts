// Shared by the Firecracker driver and fake tests.

/** An x86 ELF header, a bzImage setup header or an arm64 Image header: all the fake (and the driver's check) read of a kernel. */
export function fakeKernel(format: 'elf' | 'bzimage' | 'arm64'): Buffer {
  const head = Buffer.alloc(0x400);
  if (format === 'elf') Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]).copy(head, 0);
  if (format === 'bzimage') head.write('HdrS', 0x202, 'latin1');
  if (format === 'arm64') head.write('ARM\x64', 0x38, 'latin1');
  return head;
}
