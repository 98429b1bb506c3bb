// Who is on the other end of a loopback TCP connection: the kernel's socket table
// (/proc/net/tcp) names the peer socket's owner uid and inode, and /proc/<pid>/fd
// names the processes holding that inode. A guest link on loopback uses it to accept
// only the program it belongs to (its process tree), not any local user or process.

import { readdir, readFile, readlink } from 'node:fs/promises';
import os from 'node:os';

export interface PeerSocket {
  uid: number;
  inode: string;
}

/**
 * The socket table row of the connection from `peer` to `local` (both as the accepting
 * side sees them), or undefined when the kernel no longer lists it.
 */
export async function findPeerSocket(local: { address: string; port: number }, peer: { address: string; port: number }): Promise<PeerSocket | undefined> {
  // IPv4 only: links that check peers listen on 127.0.0.2.
  const from = ipv4Of(peer.address);
  const to = ipv4Of(local.address);
  if (!from || !to) return undefined;
  const hex = (address: string, port: number) => `${hexIpv4(address)}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const source = hex(from, peer.port);
  const destination = hex(to, local.port);
  let table: string;
  try {
    table = await readFile('/proc/net/tcp', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if (fields[1] === source && fields[2] === destination) return { uid: Number(fields[7]), inode: fields[9]! };
  }
  return undefined;
}

/** The pid and every descendant of it, from /proc/<pid>/stat (ppid is field 4). */
export async function processTree(root: number): Promise<Set<number>> {
  const children = new Map<number, number[]>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(rest[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const tree = new Set<number>([root]);
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.pop()!) ?? []) {
      if (!tree.has(child)) {
        tree.add(child);
        queue.push(child);
      }
    }
  }
  return tree;
}

/** Whether one of these processes holds the socket with this inode. */
export async function heldBy(inode: string, pids: Iterable<number>): Promise<boolean> {
  const target = `socket:[${inode}]`;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if ((await readlink(`/proc/${pid}/fd/${fd}`)) === target) return true;
      } catch {
        // closed meanwhile
      }
    }
  }
  return false;
}

/**
 * Accepts connections made by a process tree (a root pid and its descendants) running
 * as one uid. The processes that connected before are looked at first: a program's
 * connections come from the same few processes, and walking all of /proc (~100 ms on
 * a loaded host) is needed only for a new one.
 */
export class ProcessTreePeers {
  private known = new Set<number>();

  constructor(private readonly root: () => number | undefined, private readonly uid: number) {}

  async owns(local: { address: string; port: number }, peer: { address: string; port: number }): Promise<boolean> {
    const root = this.root();
    if (root === undefined) return false;
    const socket = await findPeerSocket(local, peer);
    if (!socket || socket.uid !== this.uid) return false;
    const recent = [root, ...this.known];
    for (const pid of recent) if (await heldBy(socket.inode, [pid])) return true;
    const tree = await processTree(root);
    for (const pid of tree) {
      if (recent.includes(pid)) continue;
      if (await heldBy(socket.inode, [pid])) {
        // Bounded: a program forking a new client per call does not grow this forever.
        if (this.known.size >= 16) this.known = new Set();
        this.known.add(pid);
        return true;
      }
    }
    return false;
  }
}

function ipv4Of(address: string): string | undefined {
  const plain = address.toLowerCase().startsWith('::ffff:') ? address.slice(7) : address;
  return /^\d+\.\d+\.\d+\.\d+$/.test(plain) ? plain : undefined;
}

/** As the kernel prints it: the address's bytes in host order. */
function hexIpv4(address: string): string {
  const bytes = address.split('.').map(Number);
  const ordered = os.endianness() === 'LE' ? bytes.reverse() : bytes;
  return ordered.map((b) => b.toString(16).toUpperCase().padStart(2, '0')).join('');
}
