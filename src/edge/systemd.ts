// systemd socket activation (sd_listen_fds): inherited listening sockets start at
// fd 3; LISTEN_FDNAMES names them (FileDescriptorName= in the .socket unit).

export interface InheritedSocket {
  fd: number;
  name: string;
}

const SD_LISTEN_FDS_START = 3;

/**
 * The sockets systemd passed to this process, or [] when not socket-activated.
 * The variables are removed from the environment so children never see them.
 */
export function inheritedSockets(env: NodeJS.ProcessEnv = process.env, pid = process.pid): InheritedSocket[] {
  const listenPid = env.LISTEN_PID;
  const count = Number(env.LISTEN_FDS ?? 0);
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (listenPid !== String(pid) || !Number.isInteger(count) || count <= 0) return [];
  return Array.from({ length: count }, (_, i) => ({ fd: SD_LISTEN_FDS_START + i, name: names[i] || 'unknown' }));
}
