// The guest kernel: a Debian cloud kernel package, downloaded with `apt-get download`
// and unpacked with `dpkg-deb -x` into a cache directory (never installed on the
// host). The cloud flavour has virtio as modules, which the initramfs loads.
// Firecracker wants the uncompressed ELF vmlinux, extracted from the bzImage here.

import { execFile, spawn } from 'node:child_process';
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { exists } from '../host/index.js';

const run = promisify(execFile);

/** Default cache of downloaded kernels (also what .ci/setup.d/vm.sh fills). */
export const DEFAULT_VM_CACHE = process.env.ALEPH_EDGE_VM_CACHE || '/var/cache/aleph-edge-test';
export const DEFAULT_KERNEL_PACKAGE = 'linux-image-cloud-amd64';

export interface KernelFiles {
  version: string; // e.g. 6.1.0-50-cloud-amd64
  vmlinuz: string; // bzImage (qemu -kernel)
  modulesDir: string; // <root>/lib/modules/<version>
}

/** The newest kernel already unpacked in the cache, if any. */
export async function findCachedKernel(cacheDir: string = DEFAULT_VM_CACHE): Promise<KernelFiles | undefined> {
  let names: string[];
  try {
    names = await readdir(cacheDir);
  } catch {
    return undefined;
  }
  const candidates = names.filter((n) => n.startsWith('kernel-') && !n.endsWith('.tmp')).sort().reverse();
  for (const name of candidates) {
    const version = name.slice('kernel-'.length);
    const files = kernelFiles(join(cacheDir, name), version);
    if (await exists(files.vmlinuz)) return files;
  }
  return undefined;
}

function kernelFiles(root: string, version: string): KernelFiles {
  return { version, vmlinuz: join(root, 'boot', `vmlinuz-${version}`), modulesDir: join(root, 'lib', 'modules', version) };
}

/**
 * Returns the cached kernel, downloading and unpacking it first when absent.
 * `pkg` may be a meta package (its linux-image dependency is followed).
 */
export async function ensureKernel(cacheDir: string = DEFAULT_VM_CACHE, pkg: string = DEFAULT_KERNEL_PACKAGE): Promise<KernelFiles> {
  const cached = await findCachedKernel(cacheDir);
  if (cached) return cached;
  await mkdir(cacheDir, { recursive: true });
  const image = await resolveImagePackage(pkg);
  await run('apt-get', ['download', '-q', image], { cwd: cacheDir, maxBuffer: 1 << 20 });
  const deb = (await readdir(cacheDir)).find((n) => n.startsWith(`${image}_`) && n.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download ${image} produced no .deb in ${cacheDir}`);
  const version = image.replace(/^linux-image-/, '');
  const tmp = join(cacheDir, `kernel-${version}.tmp`);
  await rm(tmp, { recursive: true, force: true });
  await run('dpkg-deb', ['-x', join(cacheDir, deb), tmp]);
  await rename(tmp, join(cacheDir, `kernel-${version}`));
  const files = kernelFiles(join(cacheDir, `kernel-${version}`), version);
  if (!(await exists(files.vmlinuz))) throw new Error(`${deb} has no boot/vmlinuz-${version}`);
  return files;
}

async function resolveImagePackage(pkg: string): Promise<string> {
  if (/^linux-image-\d/.test(pkg)) return pkg;
  const { stdout } = await run('apt-cache', ['depends', pkg]);
  const dep = /Depends: (linux-image-\d[^\s]*)/.exec(stdout)?.[1];
  if (!dep) throw new Error(`apt-cache depends ${pkg}: no linux-image-<version> dependency (run apt-get update?)`);
  return dep;
}

// Compressed-payload signatures inside a bzImage, with the tool that decompresses them.
const PAYLOADS: Array<{ magic: Buffer; tool: string[] }> = [
  { magic: Buffer.from([0x02, 0x21, 0x4c, 0x18]), tool: ['lz4', '-dc'] },
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), tool: ['zstd', '-dcq'] },
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), tool: ['xz', '-dcq'] },
  { magic: Buffer.from([0x1f, 0x8b, 0x08]), tool: ['gzip', '-dcq'] },
];
const ELF = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/**
 * Extracts the uncompressed ELF kernel (what Firecracker boots) from a bzImage:
 * finds the compressed payload by its signature, decompresses it with the matching
 * tool (trailing bytes after the payload make the tools complain; only the output
 * counts) and checks that the result is an ELF file.
 */
export async function extractVmlinux(vmlinuz: string, out: string): Promise<void> {
  const image = await readFile(vmlinuz);
  if (image.subarray(0, 4).equals(ELF)) {
    await writeFile(out, image);
    return;
  }
  for (const { magic, tool } of PAYLOADS) {
    for (let at = image.indexOf(magic); at !== -1; at = image.indexOf(magic, at + 1)) {
      const elf = await decompress(tool, image.subarray(at));
      if (elf && elf.length > 4 && elf.subarray(0, 4).equals(ELF)) {
        const tmp = `${out}.tmp`;
        await writeFile(tmp, elf);
        await rename(tmp, out);
        return;
      }
    }
  }
  throw new Error(`${vmlinuz}: no compressed ELF kernel found (tried lz4, zstd, xz, gzip payloads)`);
}

function decompress(tool: string[], data: Buffer): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const child = spawn(tool[0]!, tool.slice(1), { stdio: ['pipe', 'pipe', 'ignore'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', () => resolve(undefined));
    child.stdin.on('error', () => {}); // EPIPE once the tool stops reading trailing bytes
    child.on('close', () => resolve(Buffer.concat(chunks)));
    child.stdin.end(data);
  });
}

/**
 * True when KVM acceleration should work: /dev/kvm opens read-write and the CPU
 * advertises hardware virtualisation (vmx/svm). Some sandboxes expose a /dev/kvm
 * whose VMs never run; without the CPU flag we do not trust it.
 */
export async function kvmUsable(): Promise<boolean> {
  try {
    const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
    if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) return false;
    const handle = await open('/dev/kvm', 'r+');
    await handle.close();
    return true;
  } catch {
    return false;
  }
}
