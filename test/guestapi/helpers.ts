import http from 'node:http';
import { defaultGuestApiSettings } from '../../src/config/schema.js';
import type { GuestApiSettings } from '../../src/config/index.js';
import type { Program } from '../../src/programs/index.js';

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

/** One HTTP request over a unix socket (as a guest's client would send through its link). */
export function call(socketPath: string, method: string, target: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path: target, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const data = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data, text: data.toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export function settingsFor(socketDir: string, redis: string, overrides: Partial<GuestApiSettings> = {}): GuestApiSettings {
  return { ...defaultGuestApiSettings(), socketDir, redis, ...overrides };
}

export function program(hashDigit: string, sender = '0xSENDER'): Program {
  return {
    hash: hashDigit.repeat(64), name: '', memoryMib: 64, vcpus: 1, healthPath: '', requestTimeoutMs: 0,
    launch: { kind: 'process', command: ['true'], cwd: '/', env: {} }, sender,
  };
}
