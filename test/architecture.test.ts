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
  'cli.ts': ['app', 'cluster', 'common', 'config', 'drivers', 'status'],
};

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
      const targetComponent = target[0]!;
      if (targetComponent === component) continue;
      out.push({ file: path.relative(ROOT, file), spec, component, target: targetComponent, deep: !(target.length === 2 && target[1] === 'index.js') });
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
    assert.deepEqual(found.filter((n) => !known.has(n)), [], 'add new components to ALLOWED with the dependencies DESIGN.md gives them');
  });

  it('imports between components follow the table (data flows one way)', () => {
    const wrong = all.filter((i) => !(ALLOWED[i.component] ?? []).includes(i.target)).map((i) => `${i.file}: ${i.spec} (${i.component} -> ${i.target})`);
    assert.deepEqual(wrong, []);
  });

  it('another component is reached only through its index.ts', () => {
    const deep = all.filter((i) => i.deep && i.target !== 'cli.ts').map((i) => `${i.file}: ${i.spec}`);
    assert.deepEqual(deep, []);
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
