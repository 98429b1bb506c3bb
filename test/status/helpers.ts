// Shared fixtures for the status tests: a recording StatusProvider with realistic
// data, temp directories and a raw HTTP-over-unix-socket request helper.

import { request } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionInfo } from '../../src/orchestrator/index.js';
import type { CertInfo } from '../../src/tls/index.js';
import type { ReloadResult, StatusProvider, StatusSnapshot } from '../../src/status/index.js';

export const HASH_A = 'a3f1c2d4e5b6a7980112233445566778899aabbccddeeff00112233445566778';
export const HASH_B = '0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c';

export function sampleVms(now = Date.now()): ExecutionInfo[] {
  return [
    {
      hash: HASH_A,
      name: 'hello-api',
      state: 'ready',
      driver: 'process',
      endpoint: '127.0.0.1:41021',
      guest_api: '127.0.0.1:41022',
      pid: 4242,
      started_at: new Date(now - 3_725_000).toISOString(),
      ready_at: new Date(now - 3_724_000).toISOString(),
      last_request_at: new Date(now - 5_000).toISOString(),
      boot_ms: 812,
      requests: 1534,
      in_flight: 2,
      memory_mib: 256,
      vcpus: 1,
      restarts: 0,
      last_error: null,
    },
    {
      hash: HASH_B,
      name: '',
      state: 'starting',
      driver: 'qemu',
      endpoint: '/run/aleph-edge/vm/0b1c.sock',
      guest_api: '',
      pid: null,
      started_at: new Date(now - 2_000).toISOString(),
      ready_at: null,
      last_request_at: null,
      boot_ms: null,
      requests: 0,
      in_flight: 0,
      memory_mib: 512,
      vcpus: 2,
      restarts: 1,
      last_error: 'boot timeout',
    },
  ];
}

export function sampleCerts(now = Date.now()): CertInfo[] {
  return [
    {
      host: 'api.example.org',
      source: 'acme',
      notBefore: new Date(now - 10 * 86_400_000).toISOString(),
      notAfter: new Date(now + 80 * 86_400_000 + 3_600_000).toISOString(),
      issuer: "(STAGING) Let's Encrypt R11",
    },
    {
      host: 'localhost',
      source: 'internal',
      notBefore: new Date(now - 86_400_000).toISOString(),
      notAfter: new Date(now - 3_600_000).toISOString(),
      issuer: 'aleph-edge internal CA',
    },
  ];
}

export type ProviderCall = [method: keyof StatusProvider, ...args: unknown[]];

/** A StatusProvider that records calls; `failWith` makes every method throw. */
export class FakeProvider implements StatusProvider {
  readonly calls: ProviderCall[] = [];
  vmList: ExecutionInfo[] = sampleVms();
  certList: CertInfo[] = sampleCerts();
  reloadResult: ReloadResult = { ok: true, errors: [] };
  failWith: Error | undefined;

  snapshot(): StatusSnapshot {
    return {
      version: '0.1.0',
      uptime_s: 93_784,
      listeners: [{ protocol: 'https', address: '127.0.0.1', port: 8443 }, { protocol: 'http', address: '::', port: 80 }],
      draining: false,
      vms: this.vmList,
      certs: { count: this.certList.length, by_source: { acme: 1, internal: 1, files: 0 } },
      counters: { requests: 1534, errors_5xx: 3, boots: 4 },
    };
  }

  private record(method: keyof StatusProvider, ...args: unknown[]): void {
    this.calls.push([method, ...args]);
    if (this.failWith) throw this.failWith;
  }

  async status(): Promise<StatusSnapshot> {
    this.record('status');
    return this.snapshot();
  }
  async vms(): Promise<ExecutionInfo[]> {
    this.record('vms');
    return this.vmList;
  }
  async certs(): Promise<CertInfo[]> {
    this.record('certs');
    return this.certList;
  }
  async metrics(): Promise<string> {
    this.record('metrics');
    return '# HELP aleph_edge_requests_total Requests.\n# TYPE aleph_edge_requests_total counter\naleph_edge_requests_total 1534\n';
  }
  async stopVm(hash: string): Promise<boolean> {
    this.record('stopVm', hash);
    return this.vmList.some((vm) => vm.hash === hash);
  }
  async reload(): Promise<ReloadResult> {
    this.record('reload');
    return this.reloadResult;
  }
  async drain(): Promise<void> {
    this.record('drain');
  }
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'aleph-status-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface RawReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One HTTP request over the unix socket, without the StatusClient in the way. */
export function rawRequest(socketPath: string, method: string, path: string, body?: string): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Collects what a command writes to stdout/stderr. */
export function captureIO(env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) }, env },
    stdout: () => out.join(''),
    stderr: () => err.join(''),
  };
}
