import type { LocalProgramSettings } from '../config/index.js';
import { GUEST_DIR, NotFoundError } from '../common/index.js';
import type { Program, ProgramSource } from './types.js';

/** Programs declared in the TOML (`[[programs.local]]`); immutable, rebuilt on reload. */
export class LocalProgramSource implements ProgramSource {
  private readonly byHash: ReadonlyMap<string, Program>;

  constructor(entries: LocalProgramSettings[]) {
    this.byHash = new Map(entries.map((entry) => [entry.hash, toProgram(entry)]));
  }

  async resolve(hash: string): Promise<Program> {
    const program = this.byHash.get(hash);
    if (!program) throw new NotFoundError(`no program ${hash} on this node`);
    return program;
  }

  known(): Program[] {
    return [...this.byHash.values()];
  }
}

function toProgram(entry: LocalProgramSettings): Program {
  return {
    hash: entry.hash,
    name: entry.name,
    memoryMib: entry.memoryMib,
    vcpus: entry.vcpus,
    healthPath: entry.healthPath,
    requestTimeoutMs: entry.requestTimeoutMs,
    launch: launchOf(entry),
  };
}

function launchOf(entry: LocalProgramSettings): Program['launch'] {
  if (entry.vm) return { kind: 'vm', ...entry.vm, env: entry.env };
  if (entry.asgi) {
    // Served by our ASGI server with the host's python (drivers.process.python).
    return { kind: 'process', command: [], cwd: entry.cwd, env: entry.env, asgi: { app: entry.asgi.app, appDir: entry.asgi.code, guestDir: GUEST_DIR } };
  }
  return { kind: 'process', command: entry.command, cwd: entry.cwd, env: entry.env };
}
