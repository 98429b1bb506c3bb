// The host's end of the guest control channel, where guest/agent/aleph-agent answers
// one line per command: under qemu a virtio-serial port exposed as a unix socket;
// under Firecracker its vsock, reached through the VMM's unix socket with a CONNECT
// handshake. Used after a restore, to give the guest this life's clock, fresh
// entropy and (Firecracker) its address (docs/snapshots.md).

import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';

/** The vsock port the guest agent listens on (guest/agent/aleph-agent.c). */
export const AGENT_VSOCK_PORT = 1024;

export type ControlChannel = { kind: 'serial'; path: string } | { kind: 'vsock'; path: string; port: number };

/**
 * Sends `commands` one at a time and waits for each "ok <word>" answer; rejects with
 * the guest's "err ..." answer, a closed channel, or no answer within `timeoutMs`.
 */
export async function controlGuest(channel: ControlChannel, commands: string[], timeoutMs: number): Promise<void> {
  const socket = connect(channel.path);
  socket.setEncoding('utf8');
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  let buffer = '';
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      lines.push(buffer.slice(0, nl).trim());
      buffer = buffer.slice(nl + 1);
    }
    wake?.();
  });
  const fail = (err: Error) => {
    failure ??= err;
    wake?.();
  };
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('the guest control channel closed')));
  const timer = setTimeout(() => fail(new Error(`the guest agent did not answer within ${timeoutMs} ms`)), timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    if (channel.kind === 'vsock') {
      // Firecracker's host-initiated vsock: "CONNECT <port>", answered "OK <host port>"
      // once the guest accepted; a port nobody listens on closes the connection.
      socket.write(`CONNECT ${channel.port}\n`);
      for (;;) {
        const line = lines.shift();
        if (line !== undefined) {
          if (/^OK \d+$/.test(line)) break;
          throw new Error(`the vsock refused the connection to port ${channel.port}: ${line}`);
        }
        if (failure) throw failure;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    }
    for (const command of commands) {
      const word = command.split(' ', 1)[0]!;
      socket.write(`${command}\n`);
      for (;;) {
        const line = lines.shift();
        if (line !== undefined) {
          if (line === `ok ${word}`) break;
          if (line.startsWith(`err ${word}`)) throw new Error(`the guest agent refused ${word}: ${line}`);
          continue; // an answer to an earlier, abandoned session
        }
        if (failure) throw failure;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    }
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

/** What a restored guest is told first: the host's time now, then 64 fresh random bytes. */
export function restoreCommands(now = Date.now()): string[] {
  const seconds = Math.floor(now / 1000);
  const nanoseconds = (now % 1000) * 1_000_000;
  return [`time ${seconds} ${nanoseconds}`, `seed ${randomBytes(64).toString('hex')}`];
}
