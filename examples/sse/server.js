// Server-sent events: a long-lived streaming response, to exercise proxies that must
// not buffer. GET /events (or /) sends one event every 100 ms until the client leaves.
import { createServer } from 'node:http';

const port = Number(process.env.PORT || 8080);
const host = process.env.HOST || '0.0.0.0';
const INTERVAL_MS = 100;

const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  if (path !== '/' && path !== '/events') {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  let n = 0;
  const send = () => {
    n += 1;
    res.write(`id: ${n}\ndata: ${JSON.stringify({ n, time: new Date().toISOString() })}\n\n`);
  };
  send(); // first event at once, so clients see data before the first tick
  const timer = setInterval(send, INTERVAL_MS);
  res.on('close', () => clearInterval(timer));
});

server.listen(port, host, () => console.log(`sse listening on ${host}:${port}`));

process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // open event streams never end on their own
});
