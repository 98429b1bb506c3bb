// Runs the independent Python signer (test/control/signer.py) for the control tests.

import { execFile } from 'node:child_process';
import path from 'node:path';
import { ROOT } from '../helpers/paths.js';

/** Test wallets (secp256k1 secret keys). SCHEDULER signs allocations; OWNER owns programs. */
export const SCHEDULER_KEY = '4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318';
export const OWNER_KEY = '8f2a55949038a9610f50fb23b5883af3b4ecb3c3bb792cbcefbd1542c692be63';
export const STRANGER_KEY = '0b6e18cafb6ed99687ec547bd28139cafdd2bffe70e6b688025de6b445aa5c5b';
export const DELEGATE_KEY = '2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6';

// Debian's interpreter: the libraries come from Debian packages (.ci/setup.d/control.sh).
const PYTHON = '/usr/bin/python3';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function sign(job: Record<string, unknown>): Promise<any> {
  return new Promise((resolve, reject) => {
    const child = execFile(PYTHON, [path.join(ROOT, 'test/control/signer.py')], { timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`signer failed: ${stderr || error.message}`));
      else resolve(JSON.parse(stdout));
    });
    child.stdin!.end(JSON.stringify(job));
  });
}
