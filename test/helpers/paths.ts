import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** Repository root (tests run compiled from dist/test/...). */
export const ROOT = path.resolve(fileURLToPath(new URL('../../../', import.meta.url)));
export const CLI = path.join(ROOT, 'dist/src/cli.js');

export function example(name: string): string {
  return path.join(ROOT, 'examples', name, 'server.js');
}

export function fixtureProgram(name: string): string {
  return path.join(ROOT, 'test/fixtures/programs', name);
}
