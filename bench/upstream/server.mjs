// The benchmark upstream: a tiny fixed-response server, the same process for every
// peer (aleph-edge boots it through its process driver; Caddy, nginx and the direct
// runs are pointed at the port it listens on).
//
//   GET /            a small fixed body (64 bytes)
//   GET /1mb         1 MiB of fixed bytes
//   GET /ws          WebSocket echo
//   GET /__timing    this process's own start-to-ready time (cold-start benchmark)
//   POST /upload     swallows the body, answers with its size (body-stream benchmark)
//
// It listens on $HOST:$PORT (set by the process driver), default 127.0.0.1:8080.
import { createServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import { WebSocketServer } from 'ws';

const SMALL = Buffer.from('aleph-edge bench upstream: a small fixed response of 64 bytes.\n');
const LARGE = Buffer.alloc(1 << 20, 'x');
const port = Number(process.env.PORT || 8080);
const host = process.env.HOST || '127.0.0.1';

let readyAt = 0; // performance.now() when listening: ms since performance.timeOrigin (process start)

function fixed(res, body) {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}

const server = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/upload') {
    let bytes = 0;
    req.on('data', (chunk) => (bytes += chunk.length));
    req.on('end', () => fixed(res, Buffer.from(`${JSON.stringify({ body_bytes: bytes })}\n`)));
    return;
  }
  req.resume();
  if (req.url === '/1mb') return fixed(res, LARGE);
  if (req.url === '/__timing') {
    return fixed(res, Buffer.from(JSON.stringify({
      pid: process.pid,
      time_origin: performance.timeOrigin,
      start_to_ready_ms: readyAt,
    })));
  }
  fixed(res, SMALL);
});
server.keepAliveTimeout = 60_000;

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  if (req.url !== '/ws') return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
});

server.listen(port, host, () => {
  readyAt = performance.now();
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
