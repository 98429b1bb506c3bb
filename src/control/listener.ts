// The listener's side of /control/*: reads the request (body capped before any
// signature work), hands it to the control service as data, writes the answer; and
// the stream_logs WebSocket (credentials in the first message, as the reference does).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { createLogger } from '../common/index.js';
import type { ControlGateway, ControlRequest } from './types.js';

/** Allocation lists and notifications are short JSON; anything larger is refused unread. */
export const CONTROL_MAX_BODY = 256 * 1024;
/** A stream_logs client must authenticate this soon. */
const AUTH_TIMEOUT_MS = 10_000;
const POLL_MS = 250;
/** Stream clients at once (per listener process): a log stream is long-lived by design. */
const MAX_STREAMS = 64;
/** A client that reads slower than its program prints loses lines beyond this backlog. */
const MAX_BUFFERED = 1024 * 1024;
const HEADERS = ['authorization', 'x-auth-signature', 'x-signedpubkey', 'x-signedoperation'];
const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers': 'Content-Type, Authorization, X-SignedPubKey, X-SignedOperation, X-Auth-Signature',
};

const log = createLogger('control');

export class ControlListener {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  private streams = 0;

  constructor(private readonly gateway: ControlGateway) {}

  /** Answers one /control/* request; `target` is the origin-form path?query. */
  async serve(req: IncomingMessage, res: ServerResponse, target: string): Promise<void> {
    const { path, query } = split(target);
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...CORS, 'cache-control': 'no-store' });
      res.end();
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > CONTROL_MAX_BODY) return reply(res, 413, 'text/plain; charset=utf-8', 'Request body too large', true);
    const body = await readCapped(req, CONTROL_MAX_BODY);
    if (!body) return reply(res, 413, 'text/plain; charset=utf-8', 'Request body too large', true);
    const headers: Record<string, string> = {};
    for (const name of HEADERS) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    const request: ControlRequest = { method: req.method ?? 'GET', path, query, headers, body: body.toString('base64') };
    const answer = await this.gateway.request(request);
    reply(res, answer.status, answer.contentType, answer.body, false);
  }

  /** GET /control/machine/{ref}/stream_logs as a WebSocket. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: string): void {
    const { path } = split(target);
    if (this.streams >= MAX_STREAMS) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.stream(ws, path));
  }

  private stream(ws: WebSocket, path: string): void {
    this.streams++;
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    const finish = () => {
      if (closed) return;
      closed = true;
      this.streams--;
      clearTimeout(timer);
    };
    ws.on('close', finish);
    ws.on('error', () => ws.terminate());
    const fail = (reason: string) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ status: 'failed', reason }));
      ws.close();
    };
    timer = setTimeout(() => fail('authentication timed out'), AUTH_TIMEOUT_MS);
    ws.once('message', (data) => {
      clearTimeout(timer);
      let auth: unknown;
      try {
        auth = (JSON.parse(data.toString()) as { auth?: unknown } | null)?.auth;
      } catch (error) {
        return fail((error as Error).message);
      }
      if (!auth) return fail("missing 'auth' key in message");
      void this.gateway.authorizeStream(path, auth).then(async (result) => {
        if (!result.ok) return fail(result.reason);
        ws.send(JSON.stringify({ status: 'connected' }));
        let seq = 0;
        const pump = async (): Promise<void> => {
          if (closed) return;
          const batch = await this.gateway.logsAfter(result.hash, seq);
          for (const entry of batch.entries) {
            seq = entry.seq;
            if (ws.bufferedAmount > MAX_BUFFERED) continue; // a slow reader loses lines, the node keeps no backlog
            ws.send(JSON.stringify({ type: entry.stream, message: entry.line }));
          }
          if (!batch.running) {
            ws.send(JSON.stringify({ type: 'system', message: 'VM is not running, past logs sent' }));
            ws.close();
            return;
          }
          timer = setTimeout(() => void pump().catch(() => ws.terminate()), POLL_MS);
        };
        await pump();
      }).catch((error: Error) => {
        log.warn('stream_logs failed', { error: error.message });
        fail('internal error');
      });
    });
  }
}

function split(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q + 1) };
}

/** The whole body, or undefined once it passes `cap` (the rest is not read). */
function readCapped(req: IncomingMessage, cap: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > cap) {
        req.off('data', onData);
        req.resume();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

function reply(res: ServerResponse, status: number, type: string, body: string, close: boolean): void {
  if (res.headersSent) return;
  const headers: Record<string, string | number> = { ...CORS, 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' };
  if (close) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(body);
}
