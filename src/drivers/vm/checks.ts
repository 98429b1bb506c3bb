// Start-up checks shared by the VM drivers: each problem is one sentence naming
// the setting and what is wrong with it, so an operator can fix them all at once.

import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** The executable's path (a name is looked up in PATH), or undefined. */
export function findExecutable(file: string): string | undefined {
  const candidates = file.includes('/') ? [file] : (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter).map((dir) => join(dir, file));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

export function checkExecutable(problems: string[], key: string, file: string, hint = ''): void {
  if (file === '') problems.push(`${key} is not set`);
  else if (!findExecutable(file)) problems.push(`${key}: ${file} ${file.includes('/') ? 'does not exist or is not executable' : 'is not in PATH'}${hint}`);
}

export function checkFile(problems: string[], key: string, path: string, hint = ''): void {
  if (path === '') {
    problems.push(`${key} is not set${hint}`);
    return;
  }
  try {
    accessSync(path, constants.R_OK);
    if (!statSync(path).isFile()) problems.push(`${key}: ${path} is not a file`);
  } catch {
    problems.push(`${key}: ${path} does not exist or is not readable${hint}`);
  }
}

export function setupError(driver: string, problems: string[]): Error {
  return new Error(`the ${driver} driver cannot start: ${problems.join('; ')}`);
}

/** A directory-safe form of an execution id. */
export function safeName(text: string): string {
  return text.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64) || 'vm';
}

export const IMAGE_HINT = ' (build one with `node dist/src/drivers/image/build.js --out DIR`)';
