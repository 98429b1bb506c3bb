// The architecture as the tree shows it: one folder per component under src/, reached by
// other components only through its index.ts, and dependencies that flow one way
// (edge -> routing -> orchestrator -> driver; edge -> proxy). A new import that points
// back up, or that reaches into another component's internals, fails here with the
// file that does it.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './helpers/paths.js';

const SRC = path.join(ROOT, 'src');

/** What each component may import (besides itself). Leaves first. */
const ALLOWED: Record<string, readonly string[]> = {
  common: [],
  metrics: ['common'],
  config: ['common'],
  routing: ['common', 'config', 'metrics'],
  programs: ['common', 'config', 'metrics'],
  tls: ['common', 'config', 'metrics'],
  drivers: ['common', 'config', 'programs'],
  guestapi: ['common', 'config', 'metrics', 'programs'],
  orchestrator: ['common', 'config', 'drivers', 'metrics', 'programs'],
  proxy: ['common', 'drivers', 'orchestrator'],
  nodeapi: ['common', 'config', 'orchestrator'],
  control: ['common', 'config', 'metrics', 'orchestrator', 'programs'],
  status: ['common', 'orchestrator', 'tls'],
  edge: ['common', 'config', 'control', 'metrics', 'nodeapi', 'orchestrator', 'proxy', 'routing', 'tls'],
  cluster: ['common', 'config', 'control', 'drivers', 'edge', 'metrics', 'nodeapi', 'orchestrator', 'proxy', 'routing', 'tls'],
  app: ['cluster', 'common', 'config', 'control', 'drivers', 'edge', 'guestapi', 'metrics', 'nodeapi', 'orchestrator', 'programs', 'proxy', 'routing', 'status', 'tls'],
  'runtime.ts': [],
  'cli.ts': ['app', 'cluster', 'common', 'config', 'drivers', 'runtime.ts', 'status'],
};

/**
 * Inside drivers/: the folders that are drivers, and those every driver may share. A
 * driver folder is reached only from outside drivers' folders (factory.ts, index.ts):
 * what two drivers share lives in a shared folder, never in one of them.
 */
const DRIVER_FOLDERS = ['process', 'qemu', 'firecracker'] as const;
const SHARED_DRIVER_FOLDERS = ['host', 'image', 'machine', 'net', 'vm'] as const;

/** Imports from one folder of src/drivers/ into another (file, spec, from folder, to folder). */
function driverFolderImports(): Array<{ file: string; spec: string; from: string; to: string }> {
  const base = path.join(SRC, 'drivers');
  const out: Array<{ file: string; spec: string; from: string; to: string }> = [];
  for (const file of sourceFiles(base)) {
    const from = path.relative(base, file).split(path.sep);
    if (from.length < 2) continue; // drivers/*.ts: the component's own surface and factory
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
      const to = path.relative(base, path.resolve(path.dirname(file), match[1]!)).split(path.sep);
      if (to.length < 2 || to[0] === '..' || to[0] === from[0]) continue;
      out.push({ file: path.relative(ROOT, file), spec: match[1]!, from: from[0]!, to: to[0]! });
    }
  }
  return out;
}

interface Import { file: string; spec: string; component: string; target: string; deep: boolean }

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(full) : entry.name.endsWith('.ts') ? [full] : [];
  });
}

function imports(): Import[] {
  const out: Import[] = [];
  for (const file of sourceFiles(SRC)) {
    const component = path.relative(SRC, file).split(path.sep)[0]!;
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
      const spec = match[1]!;
      const target = path.relative(SRC, path.resolve(path.dirname(file), spec)).split(path.sep);
      // A file directly under src/ (cli.ts, runtime.ts) is a component of its own, reached as itself.
      const single = target.length === 1;
      const targetComponent = single ? target[0]!.replace(/\.js$/, '.ts') : target[0]!;
      if (targetComponent === component) continue;
      out.push({ file: path.relative(ROOT, file), spec, component, target: targetComponent, deep: !single && !(target.length === 2 && target[1] === 'index.js') });
    }
  }
  return out;
}

describe('architecture', () => {
  const all = imports();

  it('finds the components and their imports (the scan itself works)', () => {
    const components = new Set(all.map((i) => i.component));
    for (const name of ['edge', 'orchestrator', 'drivers', 'nodeapi', 'guestapi', 'app']) assert.ok(components.has(name), name);
    assert.ok(all.length > 50, `${all.length} cross-component imports`);
  });

  it('every component is in the dependency table', () => {
    const known = new Set(Object.keys(ALLOWED));
    const found = readdirSync(SRC, { withFileTypes: true }).map((e) => e.name).filter((n) => n !== 'index.ts');
    assert.deepEqual(found.filter((n) => !known.has(n)), [], 'add new components to ALLOWED with their dependencies (and to the table in docs/design.md)');
  });

  it('imports between components follow the table (data flows one way)', () => {
    const wrong = all.filter((i) => !(ALLOWED[i.component] ?? []).includes(i.target)).map((i) => `${i.file}: ${i.spec} (${i.component} -> ${i.target})`);
    assert.deepEqual(wrong, []);
  });

  it('another component is reached only through its index.ts', () => {
    const deep = all.filter((i) => i.deep && i.target !== 'cli.ts').map((i) => `${i.file}: ${i.spec}`);
    assert.deepEqual(deep, []);
  });

  it('every folder in drivers/ is either a driver or shared by them', () => {
    const folders = readdirSync(path.join(SRC, 'drivers'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    const known = new Set<string>([...DRIVER_FOLDERS, ...SHARED_DRIVER_FOLDERS]);
    assert.deepEqual(folders.filter((f) => !known.has(f)), [], 'add the folder to DRIVER_FOLDERS or SHARED_DRIVER_FOLDERS');
    for (const f of known) assert.ok(folders.includes(f), `drivers/${f} is listed but does not exist`);
  });

  it('no driver imports another driver, and shared folders import no driver', () => {
    const found = driverFolderImports();
    assert.ok(found.some((i) => i.from === 'qemu' && i.to === 'vm'), 'the scan sees the qemu driver use drivers/vm');
    const drivers = new Set<string>(DRIVER_FOLDERS);
    const wrong = found.filter((i) => drivers.has(i.to)).map((i) => `${i.file}: ${i.spec} (drivers/${i.from} -> drivers/${i.to})`);
    assert.deepEqual(wrong, [], 'move what drivers share into a shared folder (drivers/vm, drivers/host, ...)');
  });

  it('the table itself has no cycle', () => {
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (node: string, trail: string[]): void => {
      if (state.get(node) === 'done') return;
      assert.notEqual(state.get(node), 'visiting', `cycle: ${[...trail, node].join(' -> ')}`);
      state.set(node, 'visiting');
      for (const next of ALLOWED[node] ?? []) visit(next, [...trail, node]);
      state.set(node, 'done');
    };
    for (const node of Object.keys(ALLOWED)) visit(node, []);
  });
});
