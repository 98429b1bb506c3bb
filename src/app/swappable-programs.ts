import type { Program, ProgramSource } from '../programs/index.js';

/**
 * A ProgramSource whose backing source is replaced on reload, seen at once by the
 * orchestrator. Built-in programs (the node's diagnostic program) are resolved
 * first, whatever the source.
 */
export class SwappablePrograms implements ProgramSource {
  constructor(private source: ProgramSource, private builtins?: ProgramSource) {}

  replace(source: ProgramSource, builtins = this.builtins): void {
    this.source = source;
    this.builtins = builtins;
  }

  resolve(hash: string): Promise<Program> {
    if (this.builtins?.known().some((p) => p.hash === hash)) return this.builtins.resolve(hash);
    return this.source.resolve(hash);
  }

  known(): Program[] {
    return this.source.known();
  }

  exists(hash: string): Promise<boolean> {
    return this.source.exists(hash);
  }

  async eraseVolumes(hash: string): Promise<void> {
    await this.source.eraseVolumes?.(hash);
  }
}
