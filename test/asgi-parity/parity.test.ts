// Differential suite (issue 26): the same ASGI apps served by guest/aleph_asgi and by
// uvicorn (Debian's python3-uvicorn), both as local programs behind one node, get the
// same requests over HTTP/1.1 and h2. Any difference in status, headers (but Date,
// Server, the program's hash and message framing) or body is a failure, and so is a
// streamed piece arriving later than under uvicorn. uvicorn is told the mount prefix
// (--root-path) and trusts the node's X-Forwarded-* from 127.0.0.1 (its defaults).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import https from 'node:https';
import http2 from 'node:http2';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { addLogSink } from '../../src/common/index.js';
import { ROOT } from '../helpers/paths.js';
import { programHash, startTestNode, type TestNode, type TestProgram } from '../helpers/node.js';

const PYTHON = '/usr/bin/python3';
const APPS = path.join(ROOT, 'test/fixtures/asgi-parity');
const SERVERS = ['aleph', 'uvicorn'] as const;
type ServerName = (typeof SERVERS)[number];
const PROTOCOLS = ['h1', 'h2'] as const;
type Protocol = (typeof PROTOCOLS)[number];
// Framing (RFC 9112: how a body is delimited) differs by design: we give a one-piece
// body a Content-Length where uvicorn chunks some. Date and Server name the moment and
// the server; the hash headers name the program; Connection and Keep-Alive are the
// edge's, to HTTP/1.1 clients only.
const IGNORED_HEADERS = new Set(['date', 'server', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'aleph-program-itemhash', 'aleph-program-code-ref']);

const APP_SPECS = { bare: 'bare:app', fast: 'fast:app', star: 'star:app', django: 'djsite.asgi:application', broken: 'broken:app' } as const;
type AppName = keyof typeof APP_SPECS;

const hashOf = (app: AppName, server: ServerName) => programHash(`parity-${app}-${server}`);

function programs(): TestProgram[] {
  const list: TestProgram[] = [];
  for (const app of Object.keys(APP_SPECS) as AppName[]) {
    const spec = APP_SPECS[app];
    list.push({ name: `parity-${app}-aleph`, asgi: { app: spec, code: APPS }, memoryMib: 256 });
    const uvicorn = `exec ${PYTHON} -m uvicorn --host "$HOST" --port "$PORT" --app-dir ${APPS} --root-path /vm/${hashOf(app, 'uvicorn')} --no-access-log ${spec}`;
    list.push({ name: `parity-${app}-uvicorn`, command: ['/bin/sh', '-c', uvicorn], memoryMib: 256 });
  }
  return list;
}

interface Exchange {
  status: number;
  headers: Record<string, string | string[]>;
  body: string;
  aborted: boolean;
  /** ms from sending the request to each piece of the body. */
  pieces: number[];
}

interface Send {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: Buffer | Buffer[]; // several pieces: sent with `pauseMs` between them
  pauseMs?: number;
  /** Stop reading for this long after the first piece (a slow client). */
  stallMs?: number;
  digest?: boolean; // report the body's length and sha256 instead of the body
}

/** Replaces the program hash (which differs between the two servers) by a placeholder. */
function scrub(text: string, hash: string): string {
  return text.split(hash).join('<hash>');
}

function normalize(exchange: Exchange, hash: string): Omit<Exchange, 'pieces'> {
  const headers: Record<string, string | string[]> = {};
  for (const name of Object.keys(exchange.headers).sort()) {
    if (IGNORED_HEADERS.has(name) || name.startsWith(':')) continue;
    const value = exchange.headers[name]!;
    headers[name] = Array.isArray(value) ? value.map((v) => scrub(v, hash)) : scrub(value, hash);
  }
  return { status: exchange.status, headers, body: scrub(exchange.body, hash), aborted: exchange.aborted };
}

function finish(chunks: Buffer[], options: Send): string {
  const body = Buffer.concat(chunks);
  return options.digest ? `${body.length} bytes sha256 ${createHash('sha256').update(body).digest('hex')}` : body.toString();
}

async function writePieces(out: NodeJS.WritableStream & { end(): void }, options: Send): Promise<void> {
  const pieces = options.body === undefined ? [] : Array.isArray(options.body) ? options.body : [options.body];
  for (let i = 0; i < pieces.length; i++) {
    if (i > 0 && options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs));
    out.write(pieces[i]!);
  }
  out.end();
}

describe('aleph_asgi and uvicorn behind the node answer alike', () => {
  let node: TestNode;
  let session: http2.ClientHttp2Session;
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const output = new Map<string, string[]>();
  const removeSink = addLogSink((record) => {
    if (record.component !== 'program' || typeof record.fields.hash !== 'string') return;
    const lines = output.get(record.fields.hash) ?? [];
    lines.push(record.message);
    output.set(record.fields.hash, lines);
  });

  before(async () => {
    node = await startTestNode({
      programs: programs(),
      orchestrator: ['idle_timeout = "10m"'],
      extra: `[drivers.process]\npython = "${PYTHON}"\n`,
    });
    session = http2.connect(`https://127.0.0.1:${node.httpsPort}`, { ca: node.ca, servername: node.domain });
    await new Promise<void>((resolve, reject) => session.once('connect', () => resolve()).once('error', reject));
    // Boot every program that can boot, in parallel, so each case measures serving only.
    await Promise.all((['bare', 'fast', 'star', 'django'] as AppName[]).flatMap((app) => SERVERS.map((server) => h1(app, server, '/warm-up'))));
  });
  after(async () => {
    removeSink();
    session?.close();
    agent.destroy();
    await node?.close();
  });

  function h1(app: AppName, server: ServerName, target: string, options: Send = {}): Promise<Exchange> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const req = https.request({
        host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, agent,
        method: options.method ?? 'GET', path: `/vm/${hashOf(app, server)}${target}`,
        headers: { host: node.domain, ...options.headers },
      }, (res) => {
        const chunks: Buffer[] = [];
        const pieces: number[] = [];
        let aborted = false;
        res.on('data', (chunk: Buffer) => {
          pieces.push(performance.now() - started);
          chunks.push(chunk);
          if (options.stallMs && chunks.length === 1) {
            res.pause();
            setTimeout(() => res.resume(), options.stallMs);
          }
        });
        res.on('aborted', () => (aborted = true));
        res.on('error', () => (aborted = true));
        res.on('close', () => resolve({ status: res.statusCode!, headers: res.headers as Exchange['headers'], body: finish(chunks, options), aborted: aborted || !res.complete, pieces }));
      });
      req.on('error', reject);
      void writePieces(req, options);
    });
  }

  function h2(app: AppName, server: ServerName, target: string, options: Send = {}): Promise<Exchange> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const stream = session.request({ ':method': options.method ?? 'GET', ':authority': node.domain, ':path': `/vm/${hashOf(app, server)}${target}`, ...options.headers });
      const chunks: Buffer[] = [];
      const pieces: number[] = [];
      let status = 0;
      let headers: Exchange['headers'] = {};
      stream.on('response', (head) => {
        status = Number(head[':status']);
        headers = head as Exchange['headers'];
      });
      stream.on('data', (chunk: Buffer) => {
        pieces.push(performance.now() - started);
        chunks.push(chunk);
        if (options.stallMs && chunks.length === 1) {
          stream.pause();
          setTimeout(() => stream.resume(), options.stallMs);
        }
      });
      let aborted = false;
      stream.on('error', () => (aborted = true));
      stream.on('close', () => {
        if (status === 0 && !aborted) reject(new Error('h2 stream closed without a response'));
        else resolve({ status, headers, body: finish(chunks, options), aborted: aborted || stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR, pieces });
      });
      void writePieces(stream, options);
    });
  }

  const over = (protocol: Protocol) => (protocol === 'h1' ? h1 : h2);

  /** Sends the same request to both servers over both protocols; every answer must be uvicorn's over HTTP/1.1. */
  async function alike(app: AppName, target: string, options: Send = {}, protocols: readonly Protocol[] = PROTOCOLS): Promise<Record<string, Exchange>> {
    const raw: Record<string, Exchange> = {};
    for (const protocol of protocols) {
      for (const server of SERVERS) raw[`${server}/${protocol}`] = await over(protocol)(app, server, target, options);
    }
    const reference = `uvicorn/${protocols[0]}`;
    const expected = normalize(raw[reference]!, hashOf(app, 'uvicorn'));
    for (const [key, exchange] of Object.entries(raw)) {
      const [server] = key.split('/') as [ServerName];
      assert.deepEqual(normalize(exchange, hashOf(app, server)), expected, `${app} ${target}: ${key} differs from ${reference}`);
    }
    return raw;
  }

  it('both servers name themselves in a Server header; the app\'s own wins', async () => {
    for (const protocol of PROTOCOLS) {
      assert.equal((await over(protocol)('bare', 'aleph', '/scope')).headers.server, 'aleph_asgi');
      assert.equal((await over(protocol)('bare', 'uvicorn', '/scope')).headers.server, 'uvicorn');
      assert.equal((await over(protocol)('bare', 'aleph', '/custom-server')).headers.server, 'my-app/1.0');
    }
  });

  it('scope: https and the client address from the node, root_path for /vm/<hash>/', async () => {
    const raw = await alike('bare', '/scope');
    assert.deepEqual(JSON.parse(raw['aleph/h1']!.body), { scheme: 'https', root_path: `/vm/${hashOf('bare', 'aleph')}`, path: '/scope', cookie: [] });
    // The client's address from X-Forwarded-For, port 0 as uvicorn. uvicorn 0.17 skips
    // every trusted address in it, so for a client on 127.0.0.1 itself it has none.
    assert.equal((await h1('bare', 'aleph', '/client')).body, '["127.0.0.1", 0]');
    assert.equal((await h1('bare', 'uvicorn', '/client')).body, '[null, 0]');
  });

  it('redirects and url_for build https links under the mount prefix (FastAPI)', async () => {
    const slash = await alike('fast', '/items');
    assert.equal(slash['aleph/h1']!.status, 307);
    assert.equal(slash['aleph/h1']!.headers.location, `https://${node.domain}/vm/${hashOf('fast', 'aleph')}/items/`);
    const links = await alike('fast', '/links?x=1');
    assert.deepEqual(JSON.parse(scrub(links['aleph/h2']!.body, hashOf('fast', 'aleph'))), {
      url: `https://${node.domain}/vm/<hash>/links?x=1`, base: `https://${node.domain}/vm/<hash>/`, item: `https://${node.domain}/vm/<hash>/items/3`,
    });
    await alike('fast', '/go');
    await alike('fast', '/go-relative');
    await alike('fast', '/items/abc'); // 422 with FastAPI's detail
    await alike('fast', '/items/5?q=x');
  });

  it('Django with SECURE_SSL_REDIRECT serves (no redirect loop) and reverses URLs under the prefix', async () => {
    const raw = await alike('django', '/where');
    assert.equal(raw['aleph/h1']!.status, 200, raw['aleph/h1']!.body);
    assert.deepEqual(JSON.parse(scrub(raw['aleph/h1']!.body, hashOf('django', 'aleph'))), {
      secure: true, path: '/vm/<hash>/where', path_info: '/where', absolute: `https://${node.domain}/vm/<hash>/where`, comment: '/vm/<hash>/comment',
    });
    await alike('django', '/comment');
    const form = Buffer.from('text=hello+world');
    await alike('django', '/comment', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(form.length), cookie: 'a=1; b=2' }, body: form });
  });

  it('cookies: two h2 cookie fields reach the app as one Cookie header, as over HTTP/1.1', async () => {
    for (const app of ['fast', 'bare'] as const) {
      const target = app === 'fast' ? '/cookies' : '/scope';
      const results: Array<Omit<Exchange, 'pieces'>> = [];
      for (const server of SERVERS) {
        results.push(normalize(await h1(app, server, target, { headers: { cookie: 'a=1; b=2' } }), hashOf(app, server)));
        results.push(normalize(await h2(app, server, target, { headers: { cookie: ['a=1', 'b=2'] } }), hashOf(app, server)));
      }
      for (const result of results) assert.deepEqual(result, results[0]);
    }
    await alike('fast', '/set-cookies');
  });

  it('background work after the response does not hold up the next request on the connection', async () => {
    for (const server of SERVERS) {
      const accepted = await h1('fast', server, '/background', { method: 'POST' });
      assert.equal(accepted.body, '{"accepted":true}');
      // The edge reuses its kept-alive program connection: this waits on the task unless the server reads on.
      const released = await h1('fast', server, '/release');
      assert.equal(released.body, '{"task_was":"running"}', `${server}: the next request waited for the background task`);
    }
  });

  it('uploads: multipart through FastAPI, raw bodies streamed in pieces, slowly sent', async () => {
    const file = Buffer.alloc(1024 * 1024 + 17, 'abcdefgh');
    const boundary = 'parityboundary42';
    const multipart = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="data.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      file, Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    await alike('fast', '/upload', { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, body: multipart });
    const raw = Buffer.alloc(2 * 1024 * 1024 + 3, 'xyz'); // several 256 KiB pieces
    await alike('bare', '/upload', { method: 'POST', body: raw });
    const slowly = [Buffer.from('first '), Buffer.from('second '), Buffer.from('third')];
    await alike('bare', '/upload', { method: 'POST', headers: { 'content-length': '18' }, body: slowly, pauseMs: 150 });
  });

  it('streamed pieces and SSE events arrive as early as under uvicorn', async () => {
    for (const [app, target] of [['bare', '/stream'], ['fast', '/events']] as const) {
      const raw = await alike(app, target);
      for (const protocol of PROTOCOLS) {
        // Two tries each (alike's and one more); the earliest first piece of each server is compared.
        const first: Record<ServerName, number> = { aleph: raw[`aleph/${protocol}`]!.pieces[0]!, uvicorn: raw[`uvicorn/${protocol}`]!.pieces[0]! };
        for (const server of SERVERS) first[server] = Math.min(first[server], (await over(protocol)(app, server, target)).pieces[0]!);
        assert.ok(first.aleph <= first.uvicorn + 50, `${app}${target} over ${protocol}: first piece at ${first.aleph.toFixed(1)} ms, uvicorn's at ${first.uvicorn.toFixed(1)} ms`);
      }
    }
  });

  it('a slow client reading a large streamed body gets all of it', async () => {
    await alike('bare', '/big', { stallMs: 500, digest: true });
  });

  it('app exceptions: 500 before the response, a cut response after it, the app\'s own handlers', async () => {
    await alike('bare', '/raise-before');
    await alike('fast', '/crash');
    await alike('fast', '/refuse');
    // Over HTTP/1.1 only: how the edge ends an h2 stream whose program response was cut
    // is the edge's (branch edgefaults), and it varies with when the cut is read.
    const cut = await alike('bare', '/raise-after', {}, ['h1']);
    assert.equal(cut['aleph/h1']!.aborted, true);
    assert.equal(cut['aleph/h1']!.body, 'partial\n');
  });

  it('a failing lifespan startup: the program does not serve, the node answers the same for both', async () => {
    const raw = await alike('broken', '/', {}, ['h1']);
    assert.ok(raw['aleph/h1']!.status >= 500, raw['aleph/h1']!.body);
  });

  it('the app owns logging: its basicConfig and DEBUG lines work, our lines are not re-labelled or doubled', async () => {
    for (const server of SERVERS) {
      const hash = hashOf('bare', server).slice(0, 12);
      await alike('bare', '/log', {}, ['h1']);
      const lines = output.get(hash) ?? [];
      assert.ok(lines.includes('parity-log DEBUG bareapp imported'), `${server}: ${lines.join('\n')}`);
      assert.ok(lines.includes('parity-log DEBUG bareapp hello from a request'), `${server}: ${lines.join('\n')}`);
      assert.deepEqual(lines.filter((line) => /^parity-log \w+ aleph_asgi/.test(line)), []);
    }
    const ours = output.get(hashOf('bare', 'aleph').slice(0, 12)) ?? [];
    assert.equal(ours.filter((line) => line.startsWith('aleph_asgi: listening on')).length, 1);
  });

  describe('WebSocket', () => {
    interface Session { protocol: string; extension: string; received: string[]; close: [number, string] | undefined; denied: number | undefined }

    function talk(app: AppName, server: ServerName, target: string, protocols: string[], say: Array<string | Buffer>): Promise<Session> {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://127.0.0.1:${node.httpsPort}/vm/${hashOf(app, server)}${target}`, protocols, { ca: node.ca, servername: node.domain, headers: { host: node.domain } } as WebSocket.ClientOptions);
        const session: Session = { protocol: '', extension: '', received: [], close: undefined, denied: undefined };
        ws.on('open', () => {
          session.protocol = ws.protocol;
          session.extension = ws.extensions.split(';')[0]!; // the ws client offers permessage-deflate
          for (const message of say) ws.send(message);
        });
        ws.on('message', (data: Buffer, binary: boolean) => {
          const text = data.toString();
          const shown = text.length > 200 ? `${text.length} chars sha256 ${createHash('sha256').update(text).digest('hex')}` : scrub(text, hashOf(app, server));
          session.received.push(binary ? `bytes ${data.toString('hex')}` : `text ${shown}`);
        });
        ws.on('close', (code: number, reason: Buffer) => {
          session.close = [code, reason.toString()];
          resolve(session);
        });
        ws.on('unexpected-response', (_req, res) => {
          session.denied = res.statusCode;
          res.resume();
          ws.terminate();
          resolve(session);
        });
        ws.on('error', (error) => { if (session.denied === undefined) reject(error); });
      });
    }

    async function alikeWs(app: AppName, target: string, protocols: string[], say: Array<string | Buffer>): Promise<Session> {
      const aleph = await talk(app, 'aleph', target, protocols, say);
      assert.deepEqual(aleph, await talk(app, 'uvicorn', target, protocols, say), `${app} ${target}`);
      return aleph;
    }

    it('text, binary, subprotocol choice, permessage-deflate and the app\'s close code and reason (bare and Starlette)', async () => {
      const long = 'compressible '.repeat(20_000);
      for (const app of ['bare', 'star'] as const) {
        const session = await alikeWs(app, '/ws', ['x-other', 'chat'], ['hi', Buffer.from([1, 2, 3]), long, 'close 4001 bye now']);
        assert.deepEqual(session, {
          protocol: 'chat', extension: 'permessage-deflate', close: [4001, 'bye now'], denied: undefined,
          received: ['text echo hi', 'bytes 030201', `text ${long.length + 5} chars sha256 ${createHash('sha256').update(`echo ${long}`).digest('hex')}`],
        });
        const plain = await alikeWs(app, '/ws', [], ['close 1000 done']);
        assert.equal(plain.protocol, '');
      }
    });

    /** A WebSocket over h2 (RFC 8441): short masked text frames out, the frames back until the close. */
    async function talkH2(app: AppName, server: ServerName, say: string[]): Promise<{ status: number; protocol: unknown; frames: string[] }> {
      await new Promise<void>((resolve) => (session.remoteSettings.enableConnectProtocol ? resolve() : session.once('remoteSettings', () => resolve())));
      const stream = session.request({
        ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':authority': node.domain, ':path': `/vm/${hashOf(app, server)}/ws`,
        'sec-websocket-version': '13', 'sec-websocket-protocol': 'chat',
      }, { endStream: false });
      const head = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => stream.once('response', resolve).once('error', reject));
      for (const text of say) {
        const payload = Buffer.from(text);
        const mask = Buffer.from([1, 2, 3, 4]);
        stream.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))]));
      }
      const frames: string[] = [];
      await new Promise<void>((resolve) => {
        let got = Buffer.alloc(0);
        stream.on('data', (chunk: Buffer) => {
          got = Buffer.concat([got, chunk]);
          while (got.length >= 2 && got.length >= 2 + (got[1]! & 0x7f)) { // server frames: unmasked, short here
            const length = got[1]! & 0x7f;
            const opcode = got[0]! & 0x0f;
            const body = got.subarray(2, 2 + length);
            frames.push(opcode === 8 ? `close ${body.readUInt16BE(0)} ${body.subarray(2).toString()}` : `${opcode} ${body.toString()}`);
            got = got.subarray(2 + length);
            if (opcode === 8) return resolve();
          }
        });
        stream.once('close', () => resolve());
      });
      stream.close();
      return { status: Number(head[':status']), protocol: head['sec-websocket-protocol'], frames };
    }

    it('over h2 (extended CONNECT): subprotocol, echo and the app\'s close', async () => {
      const say = ['hi', 'close 4002 h2 done'];
      const aleph = await talkH2('bare', 'aleph', say);
      assert.deepEqual(aleph, await talkH2('bare', 'uvicorn', say));
      assert.deepEqual(aleph, { status: 200, protocol: 'chat', frames: ['1 echo hi', 'close 4002 h2 done'] });
    });

    it('a WebSocket closed before accept is refused with 403', async () => {
      for (const app of ['bare', 'star'] as const) assert.equal((await alikeWs(app, '/ws/deny', [], [])).denied, 403);
    });

    it('url_for of a WebSocket route from an HTTP request', async () => {
      await alike('star', '/where');
    });

    it('the WebSocket scope: wss from the node and root_path (uvicorn 0.17 says "https": a known bug of its)', async () => {
      const ours = await talk('bare', 'aleph', '/ws/scope', [], []);
      assert.deepEqual(ours.received, ['text {"scheme": "wss", "root_path": "/vm/<hash>", "path": "/ws/scope"}']);
      const theirs = await talk('bare', 'uvicorn', '/ws/scope', [], []);
      assert.deepEqual(theirs.received, ['text {"scheme": "https", "root_path": "/vm/<hash>", "path": "/ws/scope"}']);
    });
  });
});
