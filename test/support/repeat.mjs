// Runs one test file N times in a row and stops at the first failure, to tell a
// flaky test from a sound one: `npm run test:repeat -- test/orchestrator/logic.test.ts 30`.
// The build is done once by the npm script; the file may be named by its source
// (test/...ts) or compiled (dist/test/...js) path.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const [file, countArg = '10'] = process.argv.slice(2);
const runs = Number(countArg);
if (!file || !Number.isInteger(runs) || runs < 1) {
  console.error('usage: npm run test:repeat -- <test file> [runs, default 10]');
  process.exit(2);
}
const compiled = file.startsWith('dist/') ? file : `dist/${file.replace(/\.ts$/, '.js')}`;
if (!existsSync(compiled)) {
  console.error(`test:repeat: ${compiled} does not exist (is ${file} a test file?)`);
  process.exit(2);
}
for (let run = 1; run <= runs; run++) {
  const started = Date.now();
  const result = spawnSync(process.execPath, ['--test', compiled], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (result.status !== 0) {
    process.stdout.write(result.stdout);
    process.stderr.write(result.stderr);
    console.error(`test:repeat: ${compiled} failed on run ${run} of ${runs} (${seconds} s; ${run - 1} passed before)`);
    process.exit(1);
  }
  console.log(`run ${run}/${runs} passed (${seconds} s)`);
}
console.log(`test:repeat: ${compiled} passed ${runs} runs in a row`);
