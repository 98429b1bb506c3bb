// The Node.js version check, imported first by cli.ts so that it runs before any
// other module is evaluated: on an older Node (Debian 12 ships 18, many machines 20)
// undici throws at import time with a stack that names nothing the operator can act on.
// No imports here, and nothing newer than Node 18 can parse.

/** The oldest Node.js aleph-edge runs on (package.json "engines"). */
export const MINIMUM_NODE = [22, 12, 0] as const;

/** The one-line refusal for a Node.js older than MINIMUM_NODE, or undefined when it is recent enough. */
export function nodeTooOld(version: string): string | undefined {
  const have = version.replace(/^v/, '').split('.').map(Number);
  for (let i = 0; i < MINIMUM_NODE.length; i++) {
    const part = have[i] ?? 0;
    if (part > MINIMUM_NODE[i]!) return undefined;
    if (part < MINIMUM_NODE[i]!) {
      return `aleph-edge needs Node.js >= ${MINIMUM_NODE.join('.')} (24 LTS recommended); this is ${version}. `
        + 'In a checkout, `npm install` brings Node 24 and npm scripts (`npm start`, `npm test`) use it.';
    }
  }
  return undefined;
}

const refusal = nodeTooOld(process.version);
if (refusal) {
  process.stderr.write(`${refusal}\n`);
  process.exit(1);
}
