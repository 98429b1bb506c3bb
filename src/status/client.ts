// Client of the status socket, used by the CLI. Errors carry messages meant to be
// printed as-is to an operator.

import { request } from 'node:http';
import type { ExecutionInfo } from '../orchestrator/index.js';
import type { CertInfo } from '../tls/index.js';
import type { LoginInfo, ReloadResult, StatusSnapshot } from './types.js';
import { errnoCode } from './socket-file.js';
import { certFromWire, type CertRecord, type StopResult } from './wire.js';

const DEFAULT_TIMEOUT_MS = 30_000;

export type StatusMethod = 'GET' | 'POST';

/** A failed call: `status` is the HTTP status when the server answered, undefined when it could not be reached. */
export class StatusClientError extends Error {
  override readonly name = 'StatusClientError';
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

interface RawResponse {
  status: number;
  contentType: string;
  text: string;
}

export class StatusClient {
  constructor(readonly socketPath: string, private readonly timeoutMs = DEFAULT_TIMEOUT_MS) {}

  status(): Promise<StatusSnapshot> {
    return this.json('GET', '/status') as Promise<StatusSnapshot>;
  }

  vms(): Promise<ExecutionInfo[]> {
    return this.json('GET', '/vms') as Promise<ExecutionInfo[]>;
  }

  async certs(): Promise<CertInfo[]> {
    return ((await this.json('GET', '/certs')) as CertRecord[]).map(certFromWire);
  }

  async metrics(): Promise<string> {
    const response = await this.send('GET', '/metrics');
    if (response.status !== 200) throw this.httpError(response);
    return response.text;
  }

  /** Stops a running program; the server answers 404 (thrown) when none is running. */
  stopVm(hash: string): Promise<StopResult> {
    return this.json('POST', `/vms/${encodeURIComponent(hash)}/stop`) as Promise<StopResult>;
  }

  /** Resolves with the result whether or not the new configuration was accepted (200 or 422). */
  reload(): Promise<ReloadResult> {
    return this.json('POST', '/reload', [200, 422]) as Promise<ReloadResult>;
  }

  login(): Promise<LoginInfo> {
    return this.json('GET', '/login') as Promise<LoginInfo>;
  }

  async drain(): Promise<void> {
    await this.json('POST', '/drain', [202]);
  }

  /** The parsed JSON body of any endpoint, for `--json` output; throws unless the status is in `accept`. */
  async json(method: StatusMethod, path: string, accept: readonly number[] = [200]): Promise<unknown> {
    const response = await this.send(method, path);
    if (!accept.includes(response.status)) throw this.httpError(response);
    try {
      return JSON.parse(response.text) as unknown;
    } catch {
      throw new StatusClientError(`invalid JSON from aleph-edge at ${this.socketPath} (${method} ${path})`, response.status);
    }
  }

  private send(method: StatusMethod, path: string): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          path,
          method,
          // One-shot connection: a CLI must not linger on a keep-alive socket.
          agent: false,
          headers: { Host: 'localhost', Connection: 'close', Accept: 'application/json, text/plain' },
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              contentType: String(res.headers['content-type'] ?? ''),
              text: Buffer.concat(chunks).toString('utf8'),
            }),
          );
          res.on('error', (err) => reject(this.connectionError(err)));
        },
      );
      req.on('timeout', () => req.destroy(new StatusClientError(`timed out waiting for aleph-edge at ${this.socketPath}`)));
      req.on('error', (err) => reject(this.connectionError(err)));
      req.end();
    });
  }

  private connectionError(err: Error): StatusClientError {
    if (err instanceof StatusClientError) return err;
    const path = this.socketPath;
    switch (errnoCode(err)) {
      case 'ENOENT':
        return new StatusClientError(`no aleph-edge status socket at ${path} (is it running?)`);
      case 'ECONNREFUSED':
        return new StatusClientError(`nothing is listening on the status socket ${path} (stale socket; is aleph-edge running?)`);
      case 'EACCES':
      case 'EPERM':
        return new StatusClientError(
          `permission denied on the status socket ${path} (run as root or as a member of the socket's group)`,
        );
      case 'ENOTSOCK':
        return new StatusClientError(`${path} is not a socket`);
      default:
        return new StatusClientError(`cannot talk to aleph-edge at ${path}: ${err.message}`);
    }
  }

  private httpError(response: RawResponse): StatusClientError {
    let message = `aleph-edge answered HTTP ${response.status}`;
    if (response.contentType.startsWith('application/json')) {
      try {
        const body = JSON.parse(response.text) as { error?: unknown };
        if (typeof body.error === 'string' && body.error !== '') message = body.error;
      } catch {
        // keep the generic message
      }
    }
    return new StatusClientError(message, response.status);
  }
}
