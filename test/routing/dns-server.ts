// A tiny authoritative-looking DNS responder over UDP for tests. It answers TXT
// (and ANY) questions from an in-memory map with a chosen TTL, NXDOMAIN for
// unknown names, and can be told to stay silent or answer SERVFAIL. It counts
// queries per name so tests can assert on caching and single-flight.

import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';

const TYPE_TXT = 16;
const TYPE_ANY = 255;
const CLASS_IN = 1;
const RCODE_NOERROR = 0;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;

export interface TxtZoneEntry {
  /** One string[] per TXT record; each inner string is one character-string (<= 255 bytes). */
  records: string[][];
  ttlS: number;
}

export type Behaviour = 'answer' | 'silent' | 'servfail';

interface Question {
  name: string; // lowercase, no trailing dot
  type: number;
  end: number; // offset just past the question section
}

function parseQuestion(msg: Buffer): Question | undefined {
  if (msg.length < 12 || msg.readUInt16BE(4) < 1) return undefined;
  let offset = 12;
  const labels: string[] = [];
  for (;;) {
    const len = msg[offset];
    if (len === undefined || len > 63) return undefined; // no compression in questions
    offset++;
    if (len === 0) break;
    labels.push(msg.toString('latin1', offset, offset + len));
    offset += len;
  }
  if (offset + 4 > msg.length) return undefined;
  return { name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(offset), end: offset + 4 };
}

function txtRdata(strings: string[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of strings) {
    const bytes = Buffer.from(s, 'utf8');
    if (bytes.length > 255) throw new Error('TXT character-string longer than 255 bytes');
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  return Buffer.concat(parts);
}

export class TestDnsServer {
  readonly zone = new Map<string, TxtZoneEntry>();
  /** Queries received, keyed by lowercase name. */
  readonly queries = new Map<string, number>();
  behaviour: Behaviour = 'answer';
  private readonly socket = dgram.createSocket('udp4');

  /** Sets the TXT records for a name (e.g. `_aleph-id.app.test`). */
  setTxt(name: string, records: string[][], ttlS = 60): void {
    this.zone.set(name.toLowerCase(), { records, ttlS });
  }

  queryCount(name: string): number {
    return this.queries.get(name.toLowerCase()) ?? 0;
  }

  totalQueries(): number {
    let sum = 0;
    for (const n of this.queries.values()) sum += n;
    return sum;
  }

  async start(): Promise<string> {
    this.socket.on('message', (msg, rinfo) => this.handle(msg, rinfo.port, rinfo.address));
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', resolve));
    const { address, port } = this.socket.address() as AddressInfo;
    return `${address}:${port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }

  private handle(msg: Buffer, port: number, address: string): void {
    const q = parseQuestion(msg);
    if (!q) return;
    this.queries.set(q.name, (this.queries.get(q.name) ?? 0) + 1);
    if (this.behaviour === 'silent') return;

    const entry = this.zone.get(q.name);
    let rcode = RCODE_NOERROR;
    const answers: Buffer[] = [];
    if (this.behaviour === 'servfail') rcode = RCODE_SERVFAIL;
    else if (!entry) rcode = RCODE_NXDOMAIN;
    else if (q.type === TYPE_TXT || q.type === TYPE_ANY) {
      for (const record of entry.records) {
        const rdata = txtRdata(record);
        const rr = Buffer.alloc(12);
        rr.writeUInt16BE(0xc00c, 0); // pointer to the question name
        rr.writeUInt16BE(TYPE_TXT, 2);
        rr.writeUInt16BE(CLASS_IN, 4);
        rr.writeUInt32BE(entry.ttlS, 6);
        rr.writeUInt16BE(rdata.length, 10);
        answers.push(rr, rdata);
      }
    }

    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0); // id
    const rd = msg[2]! & 0x01;
    header[2] = 0x80 | 0x04 | rd; // QR, AA, RD echoed
    header[3] = 0x80 | rcode; // RA
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length / 2, 6);
    const reply = Buffer.concat([header, msg.subarray(12, q.end), ...answers]);
    this.socket.send(reply, port, address);
  }
}
