// Response bodies read into reused buffers (src/proxy/program-socket.ts): every byte
// arrives intact whatever the framing, the split of heads and bodies over reads, the
// client's speed or protocol, and a cut exchange; and the buffers are in fact reused.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import https from 'node:https';
import { after, before, describe, it } from 'node:test';
import { headEndsIn, readBufferStats } from '../../src/proxy/program-socket.js';
import { fixtureProgram } from '../helpers/paths.js';
import { programHash, request, startTestNode, type TestNode } from '../helpers/node.js';

const MiB = 1 << 20;

interface Fetched {
  status: number;
  length: number;
  sha256: string;
  expected: string | undefined;
}

describe('program sockets: reused read buffers', () => {
  let node: TestNode;
  const bodies = programHash('bodies');
  let agent: https.Agent;

  before(async () => {
    node = await startTestNode({ programs: [{ name: 'bodies', script: fixtureProgram('bodies.js') }] });
    agent = new https.Agent({ keepAlive: true, maxSockets: 4 });
    // Boot it.
    assert.equal((await request(node, { host: node.domain, path: `/vm/${bodies}/body?size=10` })).status, 200);
  });
  after(async () => {
    agent.destroy();
    await node.close();
  });

  /** GET over HTTP/1.1 (keep-alive); `slow` pauses the reader every 64 KiB so that writes back up. */
  function get(query: string, options: { slow?: boolean; cutAfter?: number } = {}): Promise<Fetched> {
    return new Promise((resolve, reject) => {
      const req = https.get({
        host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, agent,
        path: `/vm/${bodies}/body?${query}`, headers: { host: node.domain },
      }, (res) => {
        const hash = createHash('sha256');
        let length = 0;
        let sincePause = 0;
        res.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          length += chunk.length;
          sincePause += chunk.length;
          if (options.cutAfter !== undefined && length >= options.cutAfter) {
            req.destroy();
            resolve({ status: res.statusCode!, length, sha256: '', expected: undefined });
            return;
          }
          if (options.slow && sincePause >= 64 * 1024) {
            sincePause = 0;
            res.pause();
            setTimeout(() => res.resume(), 15);
          }
        });
        res.on('end', () => resolve({ status: res.statusCode!, length, sha256: hash.digest('hex'), expected: res.headers['x-sha256'] as string | undefined }));
        res.on('error', reject);
      });
      req.on('error', (error) => (options.cutAfter === undefined ? reject(error) : undefined));
    });
  }

  function intact(result: Fetched, size: number, what: string): void {
    assert.equal(result.status, 200, what);
    assert.equal(result.length, size, `${what}: length`);
    assert.equal(result.sha256, result.expected, `${what}: sha256`);
  }

  it('many keep-alive responses of mixed sizes and framings arrive byte for byte', async () => {
    const cases: string[] = [];
    for (let i = 0; i < 80; i++) {
      const size = [0, 1, 63, 4096, 65_535, 65_536, 65_537, 200_000, MiB, 3 * MiB + 17][i % 10]!;
      const framing = ['', '&chunked=1', '&splithead=1', '&pieces=9', '&pieces=5&pause=1', '&chunked=1&pieces=13&splithead=1', '&splithead=lines', '&splithead=lines&chunked=1'][i % 8]!;
      cases.push(`size=${size}&seed=${i + 1}${framing}`);
    }
    // Four at a time over the agent's four connections: buffers pass between connections.
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      const results = await Promise.all(batch.map((q) => get(q)));
      results.forEach((r, k) => intact(r, Number(/size=(\d+)/.exec(batch[k]!)![1]), batch[k]!));
    }
  });

  it('a slow reader (backpressure) next to fast ones: all intact', async () => {
    const slow = get('size=6291456&seed=77&pieces=40', { slow: true });
    const fast = await Promise.all(Array.from({ length: 12 }, (_, i) => get(`size=${(i + 1) * 150_000}&seed=${100 + i}`)));
    fast.forEach((r, i) => intact(r, (i + 1) * 150_000, `fast ${i}`));
    intact(await slow, 6_291_456, 'slow');
  });

  it('a client that leaves mid-body does not break the next exchanges', async () => {
    for (let i = 0; i < 5; i++) await get(`size=${4 * MiB}&seed=${200 + i}&pieces=20&pause=1`, { cutAfter: 300_000 + i * 77_777 });
    const after = await Promise.all(Array.from({ length: 8 }, (_, i) => get(`size=${MiB + i}&seed=${300 + i}`)));
    after.forEach((r, i) => intact(r, MiB + i, `after cut ${i}`));
  });

  /** GET over an h2 session; `stallAfter`: stop reading for 400 ms once that many bytes came. */
  function h2Get(session: http2.ClientHttp2Session, query: string, stallAfter?: number): Promise<Fetched> {
    return new Promise((resolve, reject) => {
      const stream = session.request({ ':path': `/vm/${bodies}/body?${query}`, ':authority': node.domain });
      const hash = createHash('sha256');
      let length = 0;
      let status = 0;
      let expected: string | undefined;
      let stalled = false;
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
        expected = headers['x-sha256'] as string;
      });
      stream.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        length += chunk.length;
        if (stallAfter !== undefined && !stalled && length >= stallAfter) {
          stalled = true;
          stream.pause();
          setTimeout(() => stream.resume(), 400);
        }
      });
      stream.on('end', () => resolve({ status, length, sha256: hash.digest('hex'), expected }));
      stream.on('error', reject);
    });
  }

  it('HTTP/2 clients, many streams at once: intact', async () => {
    const session = http2.connect(`https://127.0.0.1:${node.httpsPort}`, { ca: node.ca, servername: node.domain });
    try {
      const sizes = Array.from({ length: 16 }, (_, i) => [70_000, MiB, 2 * MiB + 3, 513][i % 4]!);
      const results = await Promise.all(sizes.map((size, i) => h2Get(session, `size=${size}&seed=${400 + i}${i % 3 === 0 ? '&chunked=1' : ''}`)));
      results.forEach((r, i) => intact(r, sizes[i]!, `h2 stream ${i}`));
    } finally {
      session.close();
    }
  });

  it('an HTTP/2 client with a small window that reads slowly (writes queue up): intact', async () => {
    const session = http2.connect(`https://127.0.0.1:${node.httpsPort}`, { ca: node.ca, servername: node.domain, settings: { initialWindowSize: 16_384 } });
    try {
      // Stops early and long: the node's writes queue on a closed window while the
      // program keeps sending small pieces.
      const results = await Promise.all([0, 1, 2].map((i) => h2Get(session, `size=${400_000 + i}&seed=${450 + i}&pieces=200&pause=1`, 8_192)));
      results.forEach((r, i) => intact(r, 400_000 + i, `slow h2 stream ${i}`));
    } finally {
      session.close();
    }
  });

  it('buffers are reused: 1 MiB responses and small ones read mostly into recycled buffers', async () => {
    const large = { reads: readBufferStats.reads, allocated: readBufferStats.allocated };
    for (let i = 0; i < 20; i++) intact(await get(`size=${MiB}&seed=${500 + i}`), MiB, `1 MiB #${i}`);
    const largeReads = readBufferStats.reads - large.reads;
    const largeAllocated = readBufferStats.allocated - large.allocated;
    const small = { reads: readBufferStats.reads, allocated: readBufferStats.allocated, connections: readBufferStats.connections };
    for (let i = 0; i < 200; i++) intact(await get(`size=64&seed=${600 + i}`), 64, `64 B #${i}`);
    const smallReads = readBufferStats.reads - small.reads;
    const smallAllocated = readBufferStats.allocated - small.allocated;
    // One after another over a kept-alive client connection: one program connection, kept alive too.
    const smallConnections = readBufferStats.connections - small.connections;
    process.stdout.write(`# read buffers: 20 x 1 MiB -> ${largeReads} reads, ${largeAllocated} new buffers; 200 x 64 B -> ${smallReads} reads, ${smallAllocated} new buffers\n`);
    // Without reuse every read is a new buffer.
    assert.ok(largeReads >= 20 * 16, `${largeReads} reads`);
    assert.ok(largeAllocated <= largeReads / 4, `${largeAllocated} new buffers for ${largeReads} reads`);
    assert.ok(smallReads >= 200);
    assert.ok(smallAllocated <= 10, `${smallAllocated} new buffers for ${smallReads} reads`);
    assert.ok(smallConnections <= 1, `${smallConnections} new program connections for 200 sequential requests`);
  });

  it('headEndsIn: a whole head framed by one Content-Length, and no more body than that', () => {
    const whole = (text: string) => {
      const bytes = Buffer.alloc(256);
      const n = bytes.write(text, 'latin1');
      return headEndsIn(bytes, n);
    };
    assert.equal(whole('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello'), true);
    assert.equal(whole('HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n'), true);
    assert.equal(whole('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhell'), true, 'body continues in the next read');
    assert.equal(whole('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n'), true, 'head only');
    assert.equal(whole('ello'), false, 'body bytes: the forwarder says how many are left');
    assert.equal(whole('HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok'), true, 'no reason phrase');
    assert.equal(whole('HTTP/1.1 200 OK\r\nx-content-length: 2\r\n\r\nok'), false, 'no Content-Length of its own');
    assert.equal(whole('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n'), false);
    assert.equal(whole('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello!'), false, 'bytes past the body');
    assert.equal(whole('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n'), false, 'head incomplete');
    assert.equal(whole('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\nhello'), false);
    assert.equal(whole('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello'), false, 'two lengths');
    assert.equal(whole('HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello'), false);
    assert.equal(whole('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'), false, 'interim first');
    assert.equal(whole('HTTP/1.1 200 OK\r\nx: a\r\n folded\r\ncontent-length: 0\r\n\r\n'), false, 'obs-fold');
  });
});
