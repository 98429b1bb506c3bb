// DNS-01 through an operator's exec hook: `<hook> present|cleanup <fqdn> <value>`.
// The hook must publish (or remove) a TXT record `<fqdn>` with `<value>` and exit 0
// once the record is visible to the CA. A non-zero exit, a signal or the timeout is
// an error; the hook's output is logged either way (bounded).

import { spawn } from 'node:child_process';
import type { Logger } from '../common/index.js';

export interface DnsHookOptions {
  command: string;
  timeoutMs?: number;
  log: Logger;
}

export type DnsHookAction = 'present' | 'cleanup';

const DEFAULT_TIMEOUT_MS = 120_000;
const MAX_OUTPUT = 4096;

export class DnsHook {
  constructor(private readonly options: DnsHookOptions) {}

  /** Runs the hook; rejects with the exit status and the tail of its output on failure. */
  run(action: DnsHookAction, fqdn: string, value: string): Promise<void> {
    const { command, log } = this.options;
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const child = spawn(command, [action, fqdn, value], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let output = '';
      const collect = (chunk: Buffer) => {
        if (output.length < MAX_OUTPUT) output += chunk.toString('utf8').slice(0, MAX_OUTPUT - output.length);
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }, timeoutMs);
      child.once('error', (error) => {
        clearTimeout(timer);
        log.warn('dns hook could not run', { hook: command, action, fqdn, error: error.message });
        reject(new Error(`dns hook ${command} could not run: ${error.message}`));
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        const fields = { hook: command, action, fqdn, exit: code ?? signal ?? '', ms: Date.now() - started, output: output.trim() || undefined };
        if (code === 0 && !timedOut) {
          log.info('dns hook done', fields);
          resolve();
          return;
        }
        const why = timedOut ? `timed out after ${timeoutMs} ms` : code !== null ? `exited with status ${code}` : `killed by ${signal}`;
        log.warn('dns hook failed', { ...fields, reason: why });
        reject(new Error(`dns hook ${action} ${fqdn} ${why}${output.trim() ? `: ${output.trim().slice(-300)}` : ''}`));
      });
    });
  }
}
