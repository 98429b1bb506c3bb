import type { Program, ProgramSource } from '../programs/index.js';

/** A ProgramSource whose backing source is replaced on reload, seen at once by the orchestrator. */
export class SwappablePrograms implements ProgramSource {
  constructor(private source: ProgramSource) {}

  replace(source: ProgramSource): void {
    this.source = source;
  }

  resolve(hash: string): Promise<Program> {
    return this.source.resolve(hash);
  }

  known(): Program[] {
    return this.source.known();
  }

  exists(hash: string): Promise<boolean> {
    return this.source.exists(hash);
  }
}
