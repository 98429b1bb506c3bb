import type { LocalProgramSettings } from '../config/index.js';
import { NotFoundError } from '../common/index.js';
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

  async exists(hash: string): Promise<boolean> {
    return this.byHash.has(hash);
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
    launch: entry.vm
      ? { kind: 'vm', ...entry.vm, env: entry.env }
      : { kind: 'process', command: entry.command, cwd: entry.cwd, env: entry.env },
  };
}
