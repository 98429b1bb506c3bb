// Host ports forwarded to VM ports, per item hash, in the reference's `mapped_ports`
// shape ({ "<vm port>": { host, tcp, udp } }). A VM keeps its host ports across stops
// and node restarts (its owner's ssh config names them): the map is one JSON file in
// the network state directory, written atomically, and a port leaves it only when
// the caller forgets the VM (erase) or stops asking for that VM port.

import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname } from 'node:path';

/** One VM port to forward (the owner's `port-forwarding` aggregate entry). */
export interface PortRequest {
  port: number;
  tcp: boolean;
  udp: boolean;
}

export type MappedPorts = Record<string, { host: number; tcp: boolean; udp: boolean }>;

export interface PortRange {
  min: number;
  max: number;
}

export class PortForwardError extends Error {
  override readonly name = 'PortForwardError';
  readonly code = 'bad_port_forward';
}

/** Checks a caller's list: ports 1-65535, each once, at least one protocol. Throws naming the entry. */
export function checkPortRequests(requests: PortRequest[]): void {
  const seen = new Set<number>();
  for (const [i, r] of requests.entries()) {
    if (!Number.isInteger(r.port) || r.port < 1 || r.port > 65535) throw new PortForwardError(`ports[${i}].port: ${JSON.stringify(r.port)} is not a port (1-65535)`);
    if (r.tcp !== true && r.udp !== true) throw new PortForwardError(`ports[${i}]: port ${r.port} forwards neither tcp nor udp`);
    if (seen.has(r.port)) throw new PortForwardError(`ports[${i}].port: ${r.port} is listed twice`);
    seen.add(r.port);
  }
}

/**
 * The VM ports an owner's `port-forwarding` aggregate asks for one VM, in the
 * reference's shape: `{ "<item hash>": { "ports": { "<port>": { "tcp": bool, "udp": bool } } } }`.
 * Port 22/tcp is always forwarded (ssh), as the reference does. Throws naming the field.
 */
export function portRequestsFromAggregate(aggregate: unknown, hash: string): PortRequest[] {
  const field = `port-forwarding.${hash}`;
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (aggregate !== undefined && aggregate !== null && !isObject(aggregate)) throw new PortForwardError('port-forwarding: not an object');
  const entry = isObject(aggregate) ? aggregate[hash] : undefined;
  const requests: PortRequest[] = [];
  if (entry !== undefined && entry !== null) {
    if (!isObject(entry)) throw new PortForwardError(`${field}: not an object`);
    const ports = entry.ports ?? {};
    if (!isObject(ports)) throw new PortForwardError(`${field}.ports: not an object`);
    for (const [key, value] of Object.entries(ports)) {
      const port = /^\d{1,5}$/.test(key) ? Number(key) : NaN;
      if (!(port >= 1 && port <= 65535)) throw new PortForwardError(`${field}.ports.${key}: not a port (1-65535)`);
      if (!isObject(value)) throw new PortForwardError(`${field}.ports.${key}: not an object`);
      for (const proto of ['tcp', 'udp'] as const) {
        if (value[proto] !== undefined && typeof value[proto] !== 'boolean') throw new PortForwardError(`${field}.ports.${key}.${proto}: not a boolean`);
      }
      const request = { port, tcp: value.tcp === true, udp: value.udp === true };
      if (request.tcp || request.udp) requests.push(request);
    }
  }
  if (!requests.some((r) => r.port === 22)) requests.unshift({ port: 22, tcp: true, udp: false });
  return requests;
}

export class PortMap {
  constructor(
    private readonly file: string,
    private readonly range: PortRange,
    /** False when the pool works in another network namespace: a bind here says nothing about it. */
    private readonly probeBinds: boolean,
  ) {}

  /** The host ports of one VM (empty when it has none). */
  async get(hash: string): Promise<MappedPorts> {
    return (await this.read())[hash] ?? {};
  }

  /**
   * The VM's forwards for `requests`: a VM port it already had keeps its host port;
   * new ones get the lowest free port of the range (not held by another VM, and free
   * on the host when that can be checked); ports no longer requested are dropped.
   */
  async assign(hash: string, requests: PortRequest[]): Promise<MappedPorts> {
    checkPortRequests(requests);
    const all = await this.read();
    const previous = all[hash] ?? {};
    const taken = new Set(Object.entries(all).flatMap(([h, ports]) => (h === hash ? [] : Object.values(ports).map((p) => p.host))));
    const next: MappedPorts = {};
    for (const r of requests) {
      const kept = previous[String(r.port)];
      if (kept && kept.host >= this.range.min && kept.host <= this.range.max) next[String(r.port)] = { host: kept.host, tcp: r.tcp, udp: r.udp };
    }
    for (const host of Object.values(next)) taken.add(host.host);
    for (const r of requests) {
      if (next[String(r.port)]) continue;
      const host = await this.freePort(taken);
      taken.add(host);
      next[String(r.port)] = { host, tcp: r.tcp, udp: r.udp };
    }
    if (Object.keys(next).length === 0) delete all[hash];
    else all[hash] = next;
    await this.write(all);
    return next;
  }

  /** Forgets a VM's host ports (its owner erased it). */
  async forget(hash: string): Promise<void> {
    const all = await this.read();
    if (!(hash in all)) return;
    delete all[hash];
    await this.write(all);
  }

  private async freePort(taken: Set<number>): Promise<number> {
    for (let port = this.range.min; port <= this.range.max; port++) {
      if (taken.has(port)) continue;
      if (this.probeBinds && !(await bindable(port))) continue;
      return port;
    }
    throw new PortForwardError(`no free host port left in ${this.range.min}-${this.range.max} ([drivers.network] host_ports)`);
  }

  private async read(): Promise<Record<string, MappedPorts>> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err;
    }
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${this.file}: not a port map`);
    return parsed as Record<string, MappedPorts>;
  }

  private async write(all: Record<string, MappedPorts>): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, JSON.stringify(all) + '\n', { mode: 0o600 });
      await rename(tmp, this.file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}

/** True when nothing on the host listens on the port (TCP or UDP, any address). */
async function bindable(port: number): Promise<boolean> {
  const tcp = await new Promise<boolean>((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => server.close(() => resolve(true)));
  });
  if (!tcp) return false;
  return new Promise<boolean>((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, '0.0.0.0', () => socket.close(() => resolve(true)));
  });
}
