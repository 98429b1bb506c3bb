// Preloaded into a peer's processes (node --import) by bench/work-per-request.mjs:
// counts what each request makes Node do, which does not depend on how busy the
// machine is: async resources by type (promises, timers, ticks, immediates, socket
// writes), event listeners added, 'request' events, and the process's CPU time.
// SIGUSR2 writes a snapshot to $BENCH_COUNT_DIR/<pid>.json.
import { createHook } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

const counts = Object.create(null);
createHook({ init(_id, type) { counts[type] = (counts[type] ?? 0) + 1; } }).enable();
let listeners = 0;
// Listeners added by event name (the table shows them as `on:<event>`).
const byEvent = Object.create(null);
// BENCH_COUNT_STACKS=close: listeners for that event are counted by who added them.
const stacksFor = process.env.BENCH_COUNT_STACKS;
const added = (name) => {
  listeners++;
  let key = `on:${String(name)}`;
  if (stacksFor === String(name)) {
    const frames = (new Error().stack ?? '').split('\n').slice(3, 6).map((f) => f.trim().replace(/^at /, '').replace(/\(.*\/(dist\/src|node_modules)\//, '($1/'));
    key += ` <- ${frames.join(' <- ')}`;
  }
  byEvent[key] = (byEvent[key] ?? 0) + 1;
};
let requests = 0;
const { on, prependListener, emit } = EventEmitter.prototype;
EventEmitter.prototype.on = EventEmitter.prototype.addListener = function (...args) { added(args[0]); return on.apply(this, args); };
// once() adds through on(): counted there.
EventEmitter.prototype.prependListener = function (...args) { added(args[0]); return prependListener.apply(this, args); };
EventEmitter.prototype.emit = function (name, ...args) {
  if (name === 'request') requests++;
  return emit.call(this, name, ...args);
};
// Messages to the primary (cluster workers): each is a JSON write and a parse on the other side.
if (process.send) {
  const send = process.send.bind(process);
  process.send = (...args) => {
    counts['ipc:send'] = (counts['ipc:send'] ?? 0) + 1;
    return send(...args);
  };
}
const dir = process.env.BENCH_COUNT_DIR;
process.on('SIGUSR2', () => {
  if (!dir) return;
  const cpu = process.cpuUsage();
  writeFileSync(path.join(dir, `${process.pid}.json`), JSON.stringify({ pid: process.pid, argv: process.argv.slice(1), counts: { ...counts, ...byEvent }, listeners, requests, cpu_us: cpu.user + cpu.system }));
});
