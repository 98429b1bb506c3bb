// Run by warm-path.test.ts in a process of its own, so that no test runner makes
// promises alongside: counts the promises a node makes per request to a warm program
// (the edge's path without await) and per request to a node page (an async path).
// Prints one JSON line: { program, page } in promises per request.
import { createHook } from 'node:async_hooks';
import tls from 'node:tls';
import { programHash, request, startTestNode } from '../helpers/node.js';
import { example } from '../helpers/paths.js';

const REQUESTS = 200;

const node = await startTestNode({ programs: [{ name: 'echo', script: example('echo') }] });
const hash = programHash('echo');
const programPath = `/vm/${hash}/hello`;
const pagePath = '/about/capability';
// Boots the program and fills every cache on both paths.
for (const path of [programPath, pagePath]) {
  const reply = await request(node, { host: node.domain, path });
  if (reply.status !== 200) throw new Error(`${path}: ${reply.status}`);
}

let promises = 0;
const hook = createHook({ init(_id, type) { if (type === 'PROMISE') promises++; } });

/** `count` keep-alive requests one after the other on one raw TLS connection, callbacks only. */
function sequence(path: string, count: number, done: (error?: Error) => void): void {
  const socket = tls.connect({ host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca });
  let left = count;
  let buffered = Buffer.alloc(0);
  const send = () => socket.write(`GET ${path} HTTP/1.1\r\nHost: ${node.domain}\r\n\r\n`);
  socket.once('secureConnect', send);
  socket.on('error', done);
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      const headEnd = buffered.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const head = buffered.subarray(0, headEnd).toString('latin1');
      if (!head.startsWith('HTTP/1.1 200')) return done(new Error(`${path}: ${head.split('\r\n')[0]}`));
      const length = /\r\ncontent-length: *(\d+)/i.exec(head);
      if (!length) return done(new Error(`${path}: no Content-Length`));
      const end = headEnd + 4 + Number(length[1]);
      if (buffered.length < end) return;
      buffered = buffered.subarray(end);
      if (--left === 0) {
        socket.end();
        return done();
      }
      send();
    }
  });
}

function perRequest(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    // Counted from the first write to the last answer: the connection's own set-up
    // (the TLS handshake) is done with callbacks too.
    promises = 0;
    hook.enable();
    sequence(path, REQUESTS, (error) => {
      hook.disable();
      if (error) reject(error);
      else resolve(promises / REQUESTS);
    });
  });
}

const program = await perRequest(programPath);
const page = await perRequest(pagePath);
console.log(JSON.stringify({ program, page }));
await node.close();
