// Firecracker's REST API over its unix socket: PUT requests with JSON bodies,
// 204 on success, {"fault_message"} on error.

import { request } from 'node:http';
import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export class FirecrackerApiError extends Error {
  override readonly name = 'FirecrackerApiError';
}

export class FirecrackerApi {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs: number,
  ) {}

  /** Waits until the socket exists and answers GET / (or the VMM exits, or the time is up). */
  async waitReady(exited: Promise<unknown>): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    let gone = false;
    void exited.then(() => (gone = true));
    let last = 'socket not created';
    while (Date.now() < deadline) {
      if (gone) throw new FirecrackerApiError('firecracker exited before its API socket was ready');
      try {
        await stat(this.socketPath);
        await this.call('GET', '/');
        return;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(10);
    }
    throw new FirecrackerApiError(`firecracker API socket ${this.socketPath} not ready within ${this.timeoutMs} ms (${last})`);
  }

  put(path: string, body: unknown): Promise<unknown> {
    return this.call('PUT', path, body);
  }

  call(method: 'GET' | 'PUT' | 'PATCH', path: string, body?: unknown): Promise<unknown> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          method,
          path,
          timeout: this.timeoutMs,
          headers: { accept: 'application/json', ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text === '' ? undefined : JSON.parse(text);
            } catch {
              parsed = text;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve(parsed);
            else {
              const fault = (parsed as { fault_message?: string } | undefined)?.fault_message ?? text;
              reject(new FirecrackerApiError(`${method} ${path}: HTTP ${status}: ${fault}`));
            }
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new FirecrackerApiError(`${method} ${path}: no answer within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}
