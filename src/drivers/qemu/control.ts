// The host's end of the guest control channel: qemu exposes the guest's
// virtio-serial port org.aleph.ctl as a unix socket, where guest/agent/aleph-agent
// answers one line per command. Used after a restore, to give the guest this
// life's clock and fresh entropy (docs/snapshots.md).

import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';

/** The port's name inside the guest (guest/agent/aleph-agent.c looks it up). */
export const CONTROL_PORT_NAME = 'org.aleph.ctl';

/**
 * Sends `commands` one at a time and waits for each "ok <word>" answer; rejects with
 * the guest's "err ..." answer, a closed channel, or no answer within `timeoutMs`.
 */
export async function controlGuest(socketPath: string, commands: string[], timeoutMs: number): Promise<void> {
  const socket = connect(socketPath);
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
