// The `node-floor` bench peer: the least a Node.js TLS reverse proxy does, with the
// same parts as aleph-edge (cluster workers with SO_REUSEPORT, node:https, one undici
// pool to the upstream) and nothing else: no routing, orchestrator, metrics, limits or
// header hygiene. Next to aleph-edge and Caddy in one run it separates what our own
// code costs from what Node itself costs.
//
//   node bench/upstream/node-floor.mjs PORT UPSTREAM_PORT CERT KEY WORKERS
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { Pool } from 'undici';

const [port, upstreamPort, certFile, keyFile, workersText] = process.argv.slice(2);
const workers = Number(workersText);

if (cluster.isPrimary && workers > 1) {
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers)) worker.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { pipelining: 1, keepAliveTimeout: 4_000, headersTimeout: 0, bodyTimeout: 0 });
  const server = https.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), ALPNProtocols: ['http/1.1'] }, (req, res) => {
    pool.dispatch({ method: req.method, path: req.url, headers: req.rawHeaders, body: req.method === 'GET' || req.method === 'HEAD' ? null : req }, {
      onRequestStart() {},
      onResponseStart(controller, status, headers) {
        res.writeHead(status, headers);
      },
      onResponseData(controller, chunk) {
        if (!res.write(chunk)) {
          controller.pause();
          res.once('drain', () => controller.resume());
        }
      },
      onResponseEnd() {
        res.end();
      },
      onResponseError(controller, error) {
        if (!res.headersSent) res.writeHead(502);
        res.end(String(error.message));
      },
    });
  });
  // WebSocket: the upgrade request as received, then bytes both ways.
  server.on('upgrade', (req, socket, head) => {
    const upstream = net.connect(Number(upstreamPort), '127.0.0.1', () => {
      let text = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) text += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      upstream.write(text + '\r\n');
      if (head.length) upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    const close = () => { socket.destroy(); upstream.destroy(); };
    upstream.on('error', close);
    socket.on('error', close);
  });
  server.listen({ host: '127.0.0.1', port: Number(port), reusePort: workers > 1 });
  process.on('SIGTERM', () => process.exit(0));
}
