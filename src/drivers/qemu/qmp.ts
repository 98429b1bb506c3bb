// A small QMP (QEMU Machine Protocol) client over the VM's unix socket: greeting,
// capability negotiation, then one command at a time. Events are ignored.

import { connect, type Socket } from 'node:net';

export class QmpClient {
  private buffer = '';
  private waiting: Array<{ resolve(value: unknown): void; reject(err: Error): void }> = [];
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    const fail = (err?: Error) => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w.reject(err ?? new Error('QMP connection closed'));
    };
    socket.on('error', fail);
    socket.on('close', () => fail());
  }

  /** Connects, waits for the greeting and enters command mode. */
  static async connect(path: string, timeoutMs = 2000): Promise<QmpClient> {
    const socket = connect(path);
    const client = new QmpClient(socket);
    const greeting = new Promise<unknown>((resolve, reject) => client.waiting.push({ resolve, reject }));
    const timer = setTimeout(() => socket.destroy(new Error(`QMP: no greeting within ${timeoutMs} ms`)), timeoutMs);
    try {
      await greeting;
      await client.execute('qmp_capabilities');
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error('QMP connection closed'));
    const reply = new Promise<unknown>((resolve, reject) => this.waiting.push({ resolve, reject }));
    this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    return reply;
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) !== -1) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line === '') continue;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if ('event' in message) continue;
      const waiter = this.waiting.shift();
      if (!waiter) continue;
      if ('error' in message) {
        const error = message.error as { class?: string; desc?: string };
        waiter.reject(new Error(`QMP ${error.class ?? 'error'}: ${error.desc ?? line}`));
      } else {
        waiter.resolve('QMP' in message ? message.QMP : message.return);
      }
    }
  }
}

/** A hook that connects, runs one command and disconnects (stop sequences). */
export function qmpCommand(socket: string, command: string): () => Promise<void> {
  return async () => {
    const client = await QmpClient.connect(socket);
    try {
      await client.execute(command);
    } finally {
      client.close();
    }
  };
}
