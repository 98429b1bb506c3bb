// The program-relative target travels as data (routing's decision), not by rewriting
// the client's request: the program gets exactly the target routing chose, over
// HTTP/1.1, HTTP/2 and both WebSocket paths, and the access log still shows what the
// client asked for.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import https from 'node:https';
import { after, before, describe, it } from 'node:test';
import { addLogSink, hashToLabel, type LogRecord } from '../../src/common/index.js';
import { example, fixtureProgram } from '../helpers/paths.js';
import { programHash, request, startTestNode, until, type TestNode } from '../helpers/node.js';

// Characters a URL parser would re-encode (`{`, `|`, `^`, backquote, `"`) and an
// encoded slash a decoder would turn into a separator: all must arrive as sent.
const REST = '/a%2Fb/{c}|d^e`f"g?x=1&y=%20&z={}|';

describe('the route path as an argument: what the program is asked, what the log shows', () => {
  let node: TestNode;
  const echo = programHash('echo');
  const sockets = programHash('sockets');
  const records: LogRecord[] = [];
  let removeSink: () => void;

  before(async () => {
    removeSink = addLogSink((record) => { if (record.component === 'access') records.push(record); });
    node = await startTestNode({
      programs: [{ name: 'echo', script: example('echo') }, { name: 'sockets', script: fixtureProgram('sockets.js') }],
    });
  });
  after(async () => {
    removeSink();
    await node.close();
  });

  /** The access log line of a request, once the exchange has ended and written it. */
  async function accessLine(message: string): Promise<LogRecord> {
    await until(() => records.some((r) => r.message === message), 60_000, `access log line "${message}"`);
    return records.find((r) => r.message === message)!;
  }

  it('HTTP/1.1: /vm/<hash><rest> reaches the program as <rest>, byte for byte; the log keeps the original', async () => {
    const target = `/vm/${echo}${REST}`;
    const reply = await request(node, { host: node.domain, path: target });
    assert.equal(reply.status, 200);
    assert.equal((JSON.parse(reply.body) as { path: string }).path, REST);
    assert.equal(reply.headers['aleph-program-itemhash'], echo);
    const line = await accessLine(`GET ${node.domain}${target}`);
    assert.equal(line.fields.status, 200);
  });

  it('a base32 host: the target goes on unchanged', async () => {
    const host = `${hashToLabel(echo)}.${node.domain}`;
    const reply = await request(node, { host, path: REST });
    assert.equal((JSON.parse(reply.body) as { path: string }).path, REST);
    await accessLine(`GET ${host}${REST}`);
  });

  it('HTTP/2: the same target reaches the program over its HTTP/1.1 connection', async () => {
    const session = http2.connect(`https://${node.domain}:${node.httpsPort}`, {
      ca: node.ca, host: '127.0.0.1', servername: node.domain, lookup: (_h, _o, cb) => cb(null, '127.0.0.1', 4),
    } as http2.SecureClientSessionOptions);
    try {
      const target = `/vm/${echo}${REST}`;
      const body = await new Promise<string>((resolve, reject) => {
        const stream = session.request({ ':path': target, ':authority': node.domain });
        let text = '';
        stream.setEncoding('utf8').on('data', (c: string) => { text += c; });
        stream.on('end', () => resolve(text));
        stream.on('error', reject);
      });
      assert.equal((JSON.parse(body) as { path: string }).path, REST);
      await accessLine(`GET ${node.domain}${target}`);
    } finally {
      session.destroy();
    }
  });

  it('WebSocket over HTTP/1.1: the upgrade asks the program for <rest> exactly; the log keeps the original', async () => {
    const target = `/vm/${sockets}${REST}`;
    // A hand-made upgrade: WebSocket clients parse their URL, which re-encodes the target.
    const { status, frame } = await new Promise<{ status: number; frame: Buffer }>((resolve, reject) => {
      const req = https.request({
        host: '127.0.0.1', port: node.httpsPort, servername: node.domain, ca: node.ca, path: target, agent: false,
        headers: { host: node.domain, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') },
      });
      req.once('upgrade', (res, socket, head) => {
        let got = head;
        const done = () => {
          if (got.length < 2 || got.length < 2 + (got[1]! & 0x7f)) return false;
          socket.destroy();
          resolve({ status: res.statusCode!, frame: got });
          return true;
        };
        if (!done()) socket.on('data', (c: Buffer) => { got = Buffer.concat([got, c]); done(); });
      });
      req.once('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
      req.once('error', reject);
      req.end();
    });
    assert.equal(status, 101);
    assert.equal(frame[0], 0x81);
    assert.equal(frame.subarray(2, 2 + (frame[1]! & 0x7f)).toString(), REST);
    const line = await accessLine(`WS ${node.domain}${target}`);
    assert.equal(line.fields.status, 101);
  });

  it('WebSocket over HTTP/2 (extended CONNECT): the program is asked for <rest> exactly', async () => {
    const session = http2.connect(`https://${node.domain}:${node.httpsPort}`, {
      ca: node.ca, host: '127.0.0.1', servername: node.domain, lookup: (_h, _o, cb) => cb(null, '127.0.0.1', 4),
    } as http2.SecureClientSessionOptions);
    try {
      await new Promise<void>((resolve, reject) => {
        session.once('error', reject);
        if (session.remoteSettings.enableConnectProtocol) resolve();
        else session.once('remoteSettings', () => resolve());
      });
      const target = `/vm/${sockets}${REST}`;
      const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': target, ':scheme': 'https', ':authority': node.domain, 'sec-websocket-version': '13' }, { endStream: false });
      // The fixture's first frame: FIN + text, unmasked, a length below 126, the target.
      const frame = await new Promise<Buffer>((resolve, reject) => {
        let got = Buffer.alloc(0);
        stream.on('data', (c: Buffer) => {
          got = Buffer.concat([got, c]);
          if (got.length >= 2 && got.length >= 2 + (got[1]! & 0x7f)) resolve(got);
        });
        stream.once('error', reject);
      });
      assert.equal(frame[0], 0x81);
      assert.equal(frame.subarray(2, 2 + (frame[1]! & 0x7f)).toString(), REST);
      stream.close();
      await accessLine(`WS ${node.domain}${target}`);
    } finally {
      session.destroy();
    }
  });
});
