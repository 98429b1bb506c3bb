// A program is what the orchestrator boots: identity, resources and how to launch it.

export interface ProcessLaunch {
  kind: 'process';
  command: string[]; // argv; the program must listen on $PORT (and may read $HOST)
  cwd: string;
  env: Record<string, string>;
}

export type Launch = ProcessLaunch;

export interface Program {
  hash: string; // 64 lowercase hex
  name: string; // '' when unnamed
  memoryMib: number;
  vcpus: number;
  healthPath: string; // '' = any HTTP answer means ready
  requestTimeoutMs: number; // 0 = the node's default
  launch: Launch;
}

/** Where program definitions come from (local registry, Aleph network). */
export interface ProgramSource {
  /** Resolves a hash to its program; throws NotFoundError when unknown. */
  resolve(hash: string): Promise<Program>;
  /** Programs known without a lookup (for the index page and status). */
  known(): Program[];
}
