// Counter: a stateful example program. Each GET /state/increment returns the next
// integer, so tests can tell whether requests reach the same running instance.
import { createServer } from 'node:http';

const port = Number(process.env.PORT || 8080);
const host = process.env.HOST || '0.0.0.0';
let count = 0;

function send(res, status, text) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  if (path === '/state/increment') {
    if (req.method !== 'GET') return send(res, 405, 'method not allowed\n');
    count += 1;
    return send(res, 200, String(count));
  }
  if (path === '/') return send(res, 200, 'counter example: GET /state/increment returns the next integer\n');
  send(res, 404, 'not found\n');
});

server.listen(port, host, () => console.log(`counter listening on ${host}:${port}`));

process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // keep-alive sockets would otherwise hold close() open
});
