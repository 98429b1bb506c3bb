import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

interface ConnectionQueue {
  active: number;
  waiting: Array<() => void>;
}

/**
 * Caps the HTTP/1.1 requests of one connection served at once, as h2 caps streams.
 * Node parses every pipelined request it has read and emits them all, so 5,000
 * pipelined requests meant 5,000 exchanges and program connections at once. Past the
 * cap a request waits here, unforwarded, and the connection is not read until one
 * finishes: what waits is at most what was already read (one socket read).
 */
export class PipeliningCap {
  private readonly connections = new WeakMap<Socket, ConnectionQueue>();

  constructor(private readonly max: number) {}

  /** Runs `serve` now, or once fewer than `max` requests of this connection are in flight. */
  admit(req: IncomingMessage, res: ServerResponse, serve: () => void): void {
    const socket = req.socket;
    let queue = this.connections.get(socket);
    if (!queue) {
      const created: ConnectionQueue = { active: 0, waiting: [] };
      queue = created;
      this.connections.set(socket, created);
      // Node resumes a socket it paused itself once its responses drain: ours stays paused.
      socket.on('resume', () => {
        if (created.waiting.length > 0) socket.pause();
      });
      socket.once('close', () => { created.waiting.length = 0; });
    }
    const state = queue;
    const run = () => {
      state.active++;
      res.once('close', () => {
        state.active--;
        const next = state.waiting.shift();
        if (next) next();
        else if (socket.isPaused() && !socket.destroyed) socket.resume();
      });
      serve();
    };
    if (state.active < this.max) {
      run();
    } else {
      state.waiting.push(run);
      socket.pause();
    }
  }
}
