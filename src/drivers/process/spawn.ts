// Spawning with start errors translated into short DriverStartError messages.

import { spawn, type ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';
import type { ProcessLaunch } from '../../programs/index.js';
import { DriverStartError } from '../types.js';

export type SpawnedChild = ChildProcess & { pid: number };

/**
 * Resolves once the OS has started the process (the 'spawn' event), so the caller
 * knows the pid; rejects with DriverStartError when it could not be started.
 */
export async function spawnProgram(launch: ProcessLaunch, env: Record<string, string>, options: { fd3?: boolean } = {}): Promise<SpawnedChild> {
  const [file, ...args] = launch.command;
  if (file === undefined || file === '') throw new DriverStartError('empty command');

  let child: ChildProcess;
  try {
    child = spawn(file, args, {
      cwd: launch.cwd,
      env,
      // Own process group: stop() signals the program and everything it forked.
      detached: true,
      // fd 3: where a fork-server client tells the program's pid (fork-server.ts).
      stdio: options.fd3 ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    // Synchronous throws are argument problems (e.g. NUL bytes in argv).
    throw new DriverStartError(`invalid command: ${(err as Error).message}`);
  }

  await new Promise<void>((resolve, reject) => {
    const onSpawn = () => {
      child.off('error', onError);
      resolve();
    };
    const onError = (err: NodeJS.ErrnoException) => {
      child.off('spawn', onSpawn);
      reject(err);
    };
    child.once('spawn', onSpawn);
    child.once('error', onError);
  }).catch(async (err: NodeJS.ErrnoException) => {
    throw await describeSpawnError(err, file, launch.cwd);
  });

  if (child.pid === undefined) throw new DriverStartError(`could not start ${file}`);
  return child as SpawnedChild;
}

async function describeSpawnError(err: NodeJS.ErrnoException, file: string, cwd: string): Promise<DriverStartError> {
  // ENOENT is reported both for a missing binary and for a missing cwd.
  if (!(await isDirectory(cwd))) return new DriverStartError('cwd does not exist', { cause: err });
  switch (err.code) {
    case 'ENOENT':
      return new DriverStartError(`command not found: ${file}`, { cause: err });
    case 'EACCES':
      return new DriverStartError(`permission denied: ${file}`, { cause: err });
    default:
      return new DriverStartError(`could not start ${file}: ${err.code ?? err.message}`, { cause: err });
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
