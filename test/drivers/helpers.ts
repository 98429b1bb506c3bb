// Shared fixtures for driver tests: hand-built programs, temp scripts, pid checks.

import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { addLogSink, type LogRecord } from '../../src/common/index.js';
import type { Endpoint } from '../../src/drivers/index.js';
import type { Program } from '../../src/programs/index.js';

/** Repo root, from dist/test/drivers/ at run time. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export function examplePath(name: string): string {
  return join(REPO_ROOT, 'examples', name, 'server.js');
}

let counter = 0;

export function makeProgram(command: string[], extra: { cwd?: string; env?: Record<string, string>; healthPath?: string } = {}): Program {
  counter++;
  return {
    hash: counter.toString(16).padStart(64, 'a'),
    name: `test-${counter}`,
    memoryMib: 128,
    vcpus: 1,
    healthPath: extra.healthPath ?? '',
    requestTimeoutMs: 0,
    launch: { kind: 'process', command, cwd: extra.cwd ?? REPO_ROOT, env: extra.env ?? {} },
  };
}

export function nodeProgram(script: string, extra: Parameters<typeof makeProgram>[1] = {}): Program {
  return makeProgram([process.execPath, script], extra);
}

let slotCounter = 0;
export function nextSlot(): { executionId: string } {
  return { executionId: `test-${++slotCounter}` };
}

/** A temp directory with helpers to write scripts into it; remove() when done. */
export async function tempDir(): Promise<{ path: string; script(name: string, body: string): Promise<string>; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'aleph-drivers-'));
  return {
    path,
    async script(name, body) {
      const file = join(path, name);
      await writeFile(file, body);
      return file;
    },
    remove: () => rm(path, { recursive: true, force: true }),
  };
}

/** Dead means no such pid, or a zombie waiting for init to reap it. */
export function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
    throw err;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

export async function waitGone(pid: number, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (isGone(pid)) return true;
    await sleep(20);
  }
  return isGone(pid);
}

/** Collects log records of one component while the test runs. */
export function captureLogs(component: string): { records: LogRecord[]; stop(): void; waitFor(pred: (r: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord> } {
  const records: LogRecord[] = [];
  const stop = addLogSink((r) => {
    if (r.component === component) records.push(r);
  });
  return {
    records,
    stop,
    async waitFor(pred, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = records.find(pred);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no ${component} log record matched within ${timeoutMs} ms`);
        await sleep(10);
      }
    },
  };
}

export function httpGet(endpoint: Endpoint, path: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  if (endpoint.kind !== 'tcp') throw new Error('tcp endpoint expected');
  return new Promise((resolve, reject) => {
    const req = request({ host: endpoint.host, port: endpoint.port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
