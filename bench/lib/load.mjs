// Load generators: wrk (HTTP workloads) and the Node clients in bench/clients/.
// Each run returns the JSON its tool printed on its "BENCH_JSON " line.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const WRK_SCRIPT = path.join(HERE, '../wrk/report.lua');
export const CLIENTS = path.join(HERE, '../clients');

function runTool(command, args, { env, timeoutMs }) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      const line = stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '));
      if (error || !line) {
        reject(new Error(`${path.basename(command)} ${args.join(' ')} failed: ${error?.message ?? 'no result line'}\n${stdout.slice(-2000)}${stderr.slice(-2000)}`));
        return;
      }
      resolve(JSON.parse(line.slice('BENCH_JSON '.length)));
    });
  });
}

/** wrk against a peer; `delayMs` paces every connection (see wrk/report.lua). */
export function wrk(peer, { path: urlPath = '/', threads = 2, connections = 64, durationS, headers = [], delayMs }) {
  const url = `${peer.tls ? 'https' : 'http'}://localhost:${peer.port}${urlPath}`;
  const args = ['-t', String(threads), '-c', String(connections), '-d', `${durationS}s`, '--timeout', '10s', '-s', WRK_SCRIPT];
  for (const h of headers) args.push('-H', h);
  args.push(url);
  const env = delayMs === undefined ? {} : { WRK_DELAY_MS: String(delayMs) };
  return runTool('wrk', args, { env, timeoutMs: (durationS + 30) * 1000 });
}

/** One of the Node clients in bench/clients/, with `--key value` options. */
export function nodeClient(name, options, durationS) {
  const args = [path.join(CLIENTS, `${name}.mjs`)];
  for (const [key, value] of Object.entries(options)) args.push(`--${key}`, String(value));
  return runTool(process.execPath, args, { timeoutMs: (durationS + 30) * 1000 });
}

/**
 * h2load (nghttp2-client) over HTTP/2: `clients` connections with `streams` each in
 * flight. h2load prints a text summary; the request rate and counts are parsed from it.
 */
export function h2load(peer, { path: urlPath = '/', clients = 8, streams = 8, threads = 2, durationS }) {
  const url = `https://localhost:${peer.port}${urlPath}`;
  const args = ['-c', String(clients), '-m', String(streams), '-t', String(threads), '-D', String(durationS), url];
  return new Promise((resolve, reject) => {
    execFile('h2load', args, { timeout: (durationS + 30) * 1000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      const rate = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(stdout);
      const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(stdout);
      const protocol = /Application protocol: (\S+)/.exec(stdout)?.[1];
      if (error || !rate || !counts) {
        reject(new Error(`h2load ${args.join(' ')} failed: ${error?.message ?? 'no summary'}\n${stdout.slice(-2000)}${stderr.slice(-2000)}`));
        return;
      }
      resolve({ per_s: Number(rate[2]), seconds: Number(rate[1]), done: Number(counts[3]), failed: Number(counts[5]), errored: Number(counts[6]), protocol });
    });
  });
}
