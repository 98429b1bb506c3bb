// Summarises a V8 CPU profile (node --cpu-prof): self time per function and per area
// (aleph-edge's own code, http-proxy-3, Node's internals, GC, idle).
//
//   BENCH_EDGE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" BENCH_PEERS=aleph-edge BENCH_WORKLOADS=keepalive npm run bench
//   node bench/profile-summary.mjs /tmp/prof/CPU.*.cpuprofile [top=25]
import { readFileSync } from 'node:fs';

const [file, topText] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/profile-summary.mjs FILE.cpuprofile [top]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));

function area(frame) {
  const { url, functionName } = frame;
  if (!url) return functionName === '(garbage collector)' || functionName === '(idle)' || functionName === '(program)' ? functionName : 'native';
  if (url.includes('/node_modules/')) return url.split('/node_modules/')[1].split('/').slice(0, url.includes('/node_modules/@') ? 2 : 1).join('/');
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[1] ?? url.slice(5)}`;
  if (url.includes('/dist/src/')) return `aleph-edge ${url.split('/dist/src/')[1].split('/')[0]}`;
  return url;
}

const functions = new Map();
const areas = new Map();
let total = 0;
for (const [id, us] of self) {
  const frame = byId.get(id).callFrame;
  const key = `${frame.functionName || '(anonymous)'} ${frame.url ? `${frame.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${frame.lineNumber + 1}` : ''}`;
  functions.set(key, (functions.get(key) ?? 0) + us);
  const a = area(frame);
  areas.set(a, (areas.get(a) ?? 0) + us);
  total += us;
}
const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
const busy = total - (areas.get('(idle)') ?? 0);
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s not idle\n\nby area (self time):`);
for (const [a, us] of [...areas].sort((x, y) => y[1] - x[1]).slice(0, 20)) console.log(`  ${pct(us)}  ${a}`);
console.log(`\ntop functions (self time):`);
for (const [k, us] of [...functions].sort((x, y) => y[1] - x[1]).slice(0, Number(topText ?? 25))) console.log(`  ${pct(us)}  ${k}`);
