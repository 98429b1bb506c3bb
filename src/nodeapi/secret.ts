// The node's login secret: made once, kept in a 0600 file under the state
// directory, compared in constant time. Only the status socket hands it out.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';

const FILE_NAME = 'login-token';
const TOKEN = /^[0-9a-f]{64}$/;

export class LoginSecret {
  private constructor(private readonly token: string, readonly file: string) {}

  /** Reads the secret, or makes it at first start (temp file + rename: never half written). */
  static async load(stateDir: string): Promise<LoginSecret> {
    const file = path.join(stateDir, FILE_NAME);
    const existing = await readFile(file, 'utf8').then((text) => text.trim(), (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw new Error(`cannot read the login secret ${file}: ${error.code ?? error.message}`);
    });
    if (existing !== undefined) {
      if (!TOKEN.test(existing)) throw new Error(`the login secret ${file} is malformed (expected 64 hex characters); delete it to make a new one`);
      await chmod(file, 0o600);
      return new LoginSecret(existing, file);
    }
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const token = randomBytes(32).toString('hex');
    const temp = `${file}.${process.pid}.tmp`;
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(token + '\n');
      await handle.sync();
    } catch (error) {
      await handle.close();
      await rm(temp, { force: true });
      throw error;
    }
    await handle.close();
    await rename(temp, file);
    return new LoginSecret(token, file);
  }

  /** The token itself: for the status socket only, never for a page. */
  reveal(): string {
    return this.token;
  }

  /** Constant time in the candidate's content and length (both sides are hashed first). */
  matches(candidate: string): boolean {
    const a = createHash('sha256').update(candidate).digest();
    const b = createHash('sha256').update(this.token).digest();
    return timingSafeEqual(a, b) && candidate.length > 0;
  }
}
