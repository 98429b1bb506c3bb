// Host ports forwarded to an instance's ports (user-mode networking's hostfwd), in
// the reference's `mapped_ports` shape: { "<vm port>": { host, tcp, udp } }. The
// allocation is kept in <stateDir>/ports.json (written atomically), so an instance
// gets the same host ports after a stop or a node restart while they are free.

import { createSocket } from 'node:dgram';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import type { MachinePort } from '../../programs/index.js';

export interface MappedPort {
  host: number;
  tcp: boolean;
  udp: boolean;
}

export type MappedPorts = Record<string, MappedPort>;

const FILE = 'ports.json';

/** Host ports for `ports`: the remembered ones when still free, new free ones otherwise. */
export async function allocatePorts(stateDir: string, ports: MachinePort[], host: string): Promise<MappedPorts> {
  const known = await readPorts(stateDir);
  const taken = new Set<number>();
  const out: MappedPorts = {};
  for (const want of ports) {
    const previous = known[String(want.port)]?.host;
    let hostPort: number | undefined;
    if (previous !== undefined && !taken.has(previous) && (await portFree(host, previous, want))) hostPort = previous;
    while (hostPort === undefined) {
      const candidate = await kernelPickedPort(host);
      if (!taken.has(candidate) && (await portFree(host, candidate, want))) hostPort = candidate;
    }
    taken.add(hostPort);
    out[String(want.port)] = { host: hostPort, tcp: want.tcp, udp: want.udp };
  }
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = path.join(stateDir, FILE);
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, JSON.stringify(out, null, 2) + '\n');
  await rename(temp, file);
  return out;
}

async function readPorts(stateDir: string): Promise<MappedPorts> {
  try {
    const parsed = JSON.parse(await readFile(path.join(stateDir, FILE), 'utf8')) as unknown;
    if (typeof parsed !== 'object' || parsed === null) return {};
    const out: MappedPorts = {};
    for (const [port, value] of Object.entries(parsed as Record<string, unknown>)) {
      const host = (value as { host?: unknown })?.host;
      if (typeof host === 'number' && Number.isInteger(host) && host > 0 && host < 65536) out[port] = { host, tcp: false, udp: false };
    }
    return out;
  } catch {
    return {};
  }
}

function kernelPickedPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** True when the port can be bound now for every protocol it is forwarded for. */
async function portFree(host: string, port: number, want: { tcp: boolean; udp: boolean }): Promise<boolean> {
  const tcp = !want.tcp || (await new Promise<boolean>((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  }));
  if (!tcp) return false;
  return !want.udp || new Promise<boolean>((resolve) => {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    socket.once('error', () => resolve(false));
    socket.bind(port, host, () => socket.close(() => resolve(true)));
  });
}
