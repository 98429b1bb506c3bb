// Guest image builder: `node dist/src/drivers/image/build.js --out DIR [--cache DIR]
// [--kernel-package PKG] [--busybox PATH] [--vmlinux]` writes DIR/vmlinuz (qemu),
// DIR/vmlinux (Firecracker, with --vmlinux) and DIR/initramfs.cpio (base image),
// plus DIR/manifest.json. Inputs are Debian packages only; the output is
// reproducible for the same packages (fixed mtimes, owners and order).

import { copyFile, mkdir, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_KERNEL_PACKAGE, DEFAULT_VM_CACHE, ensureKernel, extractVmlinux } from './kernel.js';
import { buildBaseInitramfs, DEFAULT_BUSYBOX } from './initramfs.js';
import { buildGuestAgent } from './agent.js';

export interface GuestImageOptions {
  outDir: string;
  cacheDir?: string;
  kernelPackage?: string;
  busybox?: string;
  vmlinux?: boolean;
}

export interface GuestImage {
  kernelVersion: string;
  vmlinuz: string;
  vmlinux: string | undefined;
  initramfs: string;
}

export async function buildGuestImage(options: GuestImageOptions): Promise<GuestImage> {
  const kernel = await ensureKernel(options.cacheDir ?? DEFAULT_VM_CACHE, options.kernelPackage ?? DEFAULT_KERNEL_PACKAGE);
  await mkdir(options.outDir, { recursive: true });
  const vmlinuz = join(options.outDir, 'vmlinuz');
  await copyFile(kernel.vmlinuz, `${vmlinuz}.tmp`);
  await rename(`${vmlinuz}.tmp`, vmlinuz);
  const initramfs = join(options.outDir, 'initramfs.cpio');
  // The agent is what makes a VM safe to restore from a snapshot; without a compiler the
  // image still boots, and snapshots are skipped (the node says so when it tries).
  const agent = await buildGuestAgent(join(options.outDir, 'aleph-agent')).catch((err: Error) => {
    process.stderr.write(`image build: no guest agent, VMs from this image are never snapshotted: ${err.message}\n`);
    return undefined;
  });
  await writeFile(`${initramfs}.tmp`, await buildBaseInitramfs({ modulesDir: kernel.modulesDir, busybox: options.busybox ?? DEFAULT_BUSYBOX, agent }));
  await rename(`${initramfs}.tmp`, initramfs);
  let vmlinux: string | undefined;
  if (options.vmlinux) {
    vmlinux = join(options.outDir, 'vmlinux');
    await extractVmlinux(kernel.vmlinuz, vmlinux);
  }
  const image: GuestImage = { kernelVersion: kernel.version, vmlinuz, vmlinux, initramfs };
  await writeFile(join(options.outDir, 'manifest.json'), JSON.stringify(image, null, 2) + '\n');
  return image;
}

async function main(argv: string[]): Promise<void> {
  const options: GuestImageOptions = { outDir: '' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--out') options.outDir = resolve(value());
    else if (arg === '--cache') options.cacheDir = resolve(value());
    else if (arg === '--kernel-package') options.kernelPackage = value();
    else if (arg === '--busybox') options.busybox = resolve(value());
    else if (arg === '--vmlinux') options.vmlinux = true;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!options.outDir) throw new Error('usage: build.js --out DIR [--cache DIR] [--kernel-package PKG] [--busybox PATH] [--vmlinux]');
  const image = await buildGuestImage(options);
  process.stdout.write(JSON.stringify(image, null, 2) + '\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`image build: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
