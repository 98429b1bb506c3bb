// Echo: describes each request back to the client, for proxy tests. The body is
// hashed while it streams in (never buffered), so multi-hundred-MB uploads run in
// flat memory. Also: a WebSocket echo on /ws, a slow endpoint and a chunked stream.
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { acceptHandshake, echoSession } from './websocket.js';

const port = Number(process.env.PORT || 8080);
const host = process.env.HOST || '0.0.0.0';
const MAX_WAIT_MS = 10 * 60 * 1000;

function sendJson(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function intParam(url, name, fallback, max) {
  const value = Number.parseInt(url.searchParams.get(name) ?? '', 10);
  return Number.isFinite(value) && value >= 0 ? Math.min(value, max) : fallback;
}

/**
 * Replies { method, path, headers, body_bytes, body_sha256 } once the body has streamed
 * through. `?read_mib_s=N` reads the body at N MiB/s at most: a program slower than
 * its client, so that only backpressure keeps the proxy from buffering the difference.
 */
function describe(req, res, url) {
  const hash = createHash('sha256');
  const rate = intParam(url, 'read_mib_s', 0, 100000) * 1024 * 1024;
  const started = Date.now();
  let bytes = 0;
  req.on('data', (chunk) => {
    hash.update(chunk);
    bytes += chunk.length;
    if (rate === 0) return;
    const ahead = (bytes / rate) * 1000 - (Date.now() - started);
    if (ahead > 0) {
      req.pause();
      setTimeout(() => req.resume(), ahead);
    }
  });
  req.on('end', () =>
    sendJson(res, 200, {
      method: req.method,
      path: req.url,
      headers: req.headers,
      body_bytes: bytes,
      body_sha256: hash.digest('hex'),
    }),
  );
}

/** GET /slow?ms=N: answers after N ms (the timer is dropped if the client leaves). */
function slow(req, res, url) {
  const ms = intParam(url, 'ms', 1000, MAX_WAIT_MS);
  req.resume();
  const timer = setTimeout(() => sendJson(res, 200, { slept_ms: ms }), ms);
  res.on('close', () => clearTimeout(timer));
}

/** GET /stream?chunks=N&interval=ms: N lines, one per interval, chunked. */
function stream(req, res, url) {
  const chunks = intParam(url, 'chunks', 10, 100000);
  const interval = intParam(url, 'interval', 100, MAX_WAIT_MS);
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' });
  let sent = 0;
  const tick = () => {
    if (sent >= chunks) return res.end();
    sent += 1;
    res.write(`chunk ${sent}\n`);
    timer = setTimeout(tick, interval);
  };
  let timer = setTimeout(tick, 0);
  res.on('close', () => clearTimeout(timer));
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  switch (url.pathname) {
    case '/slow':
      return slow(req, res, url);
    case '/stream':
      return stream(req, res, url);
    case '/ws':
      req.resume();
      res.writeHead(426, { upgrade: 'websocket', 'content-type': 'text/plain' });
      return res.end('this endpoint speaks WebSocket\n');
    default:
      return describe(req, res, url);
  }
});

// Upgraded sockets are invisible to server.close(); track them for shutdown.
const sessions = new Set();

server.on('upgrade', (req, socket, head) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  if (path !== '/ws') {
    socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  if (!acceptHandshake(req, socket)) return;
  const session = echoSession(socket, head);
  sessions.add(session);
  socket.on('close', () => sessions.delete(session));
});

server.listen(port, host, () => console.log(`echo listening on ${host}:${port}`));

process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  for (const session of sessions) session.close(1001); // "going away"
  // Peers that never answer our close must not keep us alive.
  setTimeout(() => process.exit(0), 2000).unref();
});
