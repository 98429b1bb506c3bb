// Shared set-up for the VM tests: the guest kernel (downloaded once into the cache
// by .ci/setup.d/vm.sh, or here on first use), a base initramfs built for the
// test run, a guest program (busybox httpd + CGI scripts), and process checks.

import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBaseInitramfs, buildGuestAgent, ensureKernel, type KernelFiles } from '../../src/drivers/image/index.js';
import { findExecutable } from '../../src/drivers/vm/index.js';

export interface GuestSetup {
  kernel: KernelFiles;
  initramfs: string;
  dir: string;
}

/** Why the VM tests cannot run here, or '' when they can. */
export function qemuSkipReason(): string {
  if (!findExecutable('qemu-system-x86_64')) return 'qemu-system-x86_64 is not installed (.ci/setup.d/vm.sh installs qemu-system-x86)';
  try {
    const head = readFileSync('/bin/busybox').subarray(0, 4);
    if (head.readUInt32BE(0) !== 0x7f454c46) return '/bin/busybox is not an ELF binary';
  } catch {
    return '/bin/busybox is missing (install busybox-static)';
  }
  return '';
}

/** Kernel from the cache (downloading it if needed) and a fresh base initramfs. */
export async function guestSetup(): Promise<GuestSetup> {
  const kernel = await ensureKernel();
  const dir = await mkdtemp(join(tmpdir(), 'aleph-edge-test-vm-'));
  const initramfs = join(dir, 'initramfs.cpio');
  const agent = await buildGuestAgent(join(dir, 'aleph-agent'));
  await writeFile(initramfs, await buildBaseInitramfs({ modulesDir: kernel.modulesDir, agent }));
  return { kernel, initramfs, dir };
}

/**
 * A guest program: busybox httpd on :8080 (or $ALEPH_HTTP_LISTEN, which the fake
 * firecracker sets) serving www/, with a CGI that shows the program's variables.
 */
export async function writeGuestProgram(dir: string): Promise<string> {
  const code = join(dir, 'code');
  await mkdir(join(code, 'www', 'cgi-bin'), { recursive: true });
  await writeFile(join(code, 'start'), '#!/bin/sh\necho "guest program starting"\nexec httpd -f -p "${ALEPH_HTTP_LISTEN:-8080}" -h "${ALEPH_GUEST_ROOT}/app/www"\n');
  await chmod(join(code, 'start'), 0o755);
  await writeFile(join(code, 'www', 'index.html'), 'hello from the guest\n');
  await writeFile(join(code, 'www', 'cgi-bin', 'env'), '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\necho "GREETING=$GREETING"\necho "QUOTED=$QUOTED"\n');
  await chmod(join(code, 'www', 'cgi-bin', 'env'), 0o755);
  // The guest API as the program sees it: its variables, and a call through $ALEPH_API_HOST.
  await writeFile(join(code, 'www', 'cgi-bin', 'api'), '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\necho "ALEPH_API_HOST=$ALEPH_API_HOST"\necho "ALEPH_ADDRESS_TO_USE=$ALEPH_ADDRESS_TO_USE"\necho "ALEPH_API_UNIX_SOCKET=[$ALEPH_API_UNIX_SOCKET]"\nbusybox wget -q -O- "$ALEPH_API_HOST/cache/get/probe" 2>&1\n');
  await chmod(join(code, 'www', 'cgi-bin', 'api'), 0o755);
  // A TCP connection from inside the guest to $QUERY_STRING (host:port): "connected" and what the peer sent, or nc's error.
  await writeFile(join(code, 'www', 'cgi-bin', 'connect'), '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\nif busybox nc -w 5 "${QUERY_STRING%:*}" "${QUERY_STRING##*:}" </dev/null >/tmp/peer 2>&1; then echo connected; fi\ncat /tmp/peer\n');
  await chmod(join(code, 'www', 'cgi-bin', 'connect'), 0o755);
  return code;
}

/** Live (non-zombie) processes whose command line contains `marker`. */
export function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1];
      if (state === 'Z') continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) found.push(Number(entry));
    } catch {
      // gone
    }
  }
  return found;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** True when `ip netns` and tap devices can be used (root, iproute2, /dev/net/tun). */
export function netnsSkipReason(): string {
  if (!isRoot()) return 'needs root (CI runs as root)';
  if (!findExecutable('ip')) return 'iproute2 (ip) is not installed';
  try {
    readdirSync('/dev/net');
  } catch {
    return '/dev/net/tun is missing';
  }
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  } catch {
    return '`ip netns` does not work here';
  }
  return '';
}

/** TCP listeners on `host` (IPv4), from /proc/net/tcp. */
export function tcpListeners(host: string, options: { ownOnly?: boolean } = {}): string[] {
  const hex = host.split('.').map((b) => Number(b).toString(16).padStart(2, '0').toUpperCase()).reverse().join('');
  // /proc/net/tcp is the whole network namespace: other test files (and other work on the
  // machine) listen on the same addresses. ownOnly keeps the sockets this process holds.
  const own = options.ownOnly ? ownSocketInodes() : undefined;
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[1]?.startsWith(`${hex}:`) && f[3] === '0A' && (!own || own.has(f[9]!)))
    .map((f) => f[1]!);
}

function ownSocketInodes(): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode) inodes.add(inode);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/** An HTTP server on a unix socket in the guest API's place: what reaches the socket is what the guest sent. */
export async function standInGuestApi(socket: string, answer = 'probe answered through the socket'): Promise<{ socket: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.end(req.url === '/cache/get/probe' ? `${answer}\n` : 'unexpected\n');
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return { socket, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
