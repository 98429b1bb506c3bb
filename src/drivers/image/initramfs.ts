// Guest images: a base initramfs (static busybox, the guest init, the virtio
// modules of the chosen kernel) and, per program, a small archive with its code,
// entrypoint and environment. The kernel unpacks concatenated archives in order,
// so a VM boots from base + program without rebuilding the base.

import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeCpio, parentDirs, treeEntries, type CpioEntry } from './cpio.js';
import { GUEST_DIR, GUEST_INIT, GUEST_MODULES } from './guest-init.js';

export const DEFAULT_BUSYBOX = '/bin/busybox';

export interface BaseImageOptions {
  modulesDir: string; // <kernel root>/lib/modules/<version>
  busybox?: string; // a statically linked busybox (Debian: busybox-static)
  /** Where guest/ is (its Python packages go to /opt/aleph-guest); default the package's own. */
  guestDir?: string;
  /** The static guest agent (buildGuestAgent), for VMs that may be snapshotted; absent = none. */
  agent?: string;
}

/** The base initramfs as one newc archive. */
export async function buildBaseInitramfs(options: BaseImageOptions): Promise<Buffer> {
  const busybox = await readFile(options.busybox ?? DEFAULT_BUSYBOX);
  if (!isStaticElf(busybox)) throw new Error(`${options.busybox ?? DEFAULT_BUSYBOX} is not a statically linked ELF (install busybox-static)`);
  const modules = await findModules(options.modulesDir, GUEST_MODULES);
  const entries: CpioEntry[] = [
    ...['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'run', 'mnt', 'app', 'etc', 'etc/aleph', 'lib', 'lib/modules', 'lib/modules/aleph'].map(
      (path): CpioEntry => ({ type: 'dir', path }),
    ),
    { type: 'char', path: 'dev/console', major: 5, minor: 1 },
    { type: 'char', path: 'dev/null', mode: 0o666, major: 1, minor: 3 },
    { type: 'file', path: 'bin/busybox', mode: 0o755, data: busybox },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    { type: 'file', path: 'init', mode: 0o755, data: Buffer.from(GUEST_INIT) },
    { type: 'file', path: 'etc/aleph/modules', data: Buffer.from(modules.map((m) => m.name).join('\n') + '\n') },
    { type: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/:/bin/sh\n') },
    { type: 'file', path: 'etc/group', data: Buffer.from('root:x:0:\n') },
  ];
  for (const module of modules) {
    entries.push({ type: 'file', path: `lib/modules/aleph/${module.name}.ko`, data: await readFile(module.path) });
  }
  if (options.agent) {
    const agent = await readFile(options.agent);
    if (!isStaticElf(agent)) throw new Error(`${options.agent} is not a statically linked ELF`);
    entries.push({ type: 'file', path: 'bin/aleph-agent', mode: 0o755, data: agent });
  }
  entries.push(...(await guestPackages(options.guestDir ?? GUEST_DIR)));
  return encodeCpio(entries);
}

/** guest/'s Python packages (folders with an __init__.py) under opt/aleph-guest, without caches and tests. */
async function guestPackages(guestDir: string): Promise<CpioEntry[]> {
  const entries: CpioEntry[] = [...parentDirs('opt/aleph-guest/x'), { type: 'dir', path: 'opt/aleph-guest' }];
  for (const entry of (await readdir(guestDir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (!entry.isDirectory() || !(await isFile(join(guestDir, entry.name, '__init__.py')))) continue;
    const tree = await treeEntries(join(guestDir, entry.name), `opt/aleph-guest/${entry.name}`);
    entries.push(...tree.filter((e) => !/(^|\/)(__pycache__|tests)(\/|$)/.test(e.path.slice('opt/aleph-guest/'.length)) && !e.path.endsWith('.pyc')));
  }
  return entries.filter((e, i) => e.type !== 'dir' || entries.findIndex((o) => o.type === 'dir' && o.path === e.path) === i);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

function isStaticElf(data: Buffer): boolean {
  if (data.length < 64 || data.readUInt32BE(0) !== 0x7f454c46) return false;
  // A dynamically linked executable names its loader in a PT_INTERP segment.
  return !data.includes(Buffer.from('/lib64/ld-linux')) && !data.includes(Buffer.from('/lib/ld-linux'));
}

async function findModules(modulesDir: string, names: string[]): Promise<Array<{ name: string; path: string }>> {
  const found = new Map<string, string>();
  async function walk(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.name.endsWith('.ko')) found.set(entry.name.slice(0, -3), path);
    }
  }
  await walk(join(modulesDir, 'kernel'));
  // Load order comes from each module's own `depends=` (its .modinfo section): the
  // order changes between kernel builds (e.g. virtio needs virtio_ring in later 6.1s).
  const out: Array<{ name: string; path: string }> = [];
  const visiting = new Set<string>();
  const done = new Set<string>();
  async function visit(name: string): Promise<void> {
    if (done.has(name) || visiting.has(name)) return;
    const path = found.get(name);
    if (!path) return; // built in, or absent from this kernel: nothing to load
    visiting.add(name);
    for (const dep of moduleDepends(await readFile(path))) await visit(dep);
    visiting.delete(name);
    done.add(name);
    out.push({ name, path });
  }
  for (const name of names) await visit(name);
  if (!out.some((m) => m.name === 'virtio_net') && found.size > 0) {
    throw new Error(`${modulesDir}: no virtio_net module; use a Debian cloud kernel`);
  }
  return out;
}

/** The `depends=` list of a kernel module file (module names use '_' there). */
export function moduleDepends(ko: Buffer): string[] {
  const at = ko.indexOf('\0depends=');
  if (at === -1) return [];
  const end = ko.indexOf(0, at + 1);
  const value = ko.toString('utf8', at + '\0depends='.length, end === -1 ? undefined : end);
  return value === '' ? [] : value.split(',').map((d) => d.replaceAll('-', '_'));
}

export interface ProgramImageOptions {
  /** Directory copied to /app (omit when the code comes on a drive). */
  codeDir?: string;
  /** Files of /etc/aleph/ by name (mounts, env, entry, cwd, hostname, stop-timeout), from src/drivers/vm/layout.ts. */
  files: Record<string, string>;
}

/** The per-program archive: /app (a code folder) and the /etc/aleph/ files. */
export async function buildProgramArchive(options: ProgramImageOptions): Promise<Buffer> {
  const entries: CpioEntry[] = options.codeDir ? await treeEntries(options.codeDir, 'app') : [];
  entries.push(...parentDirs('etc/aleph/x'));
  for (const [name, text] of Object.entries(options.files).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!/^[a-z][a-z-]*$/.test(name)) throw new Error(`bad /etc/aleph file name ${JSON.stringify(name)}`);
    entries.push({ type: 'file', path: `etc/aleph/${name}`, mode: name === 'env' ? 0o600 : 0o644, data: Buffer.from(text) });
  }
  return encodeCpio(entries);
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `export NAME='value'` lines; names that are not shell identifiers are refused. */
export function envScript(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([name, value]) => {
      if (!ENV_NAME.test(name)) throw new Error(`environment variable name ${JSON.stringify(name)} cannot be passed to a VM guest`);
      return `export ${name}='${value.replaceAll("'", `'\\''`)}'\n`;
    })
    .join('');
}
