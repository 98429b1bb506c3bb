// Text -> Settings: TOML syntax, then schema, then positions for every issue.

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { ConfigError, type ConfigIssue } from './errors.js';
import { formatPath } from './keypath.js';
import { locateKeys } from './locate.js';
import type { RawTable } from './reader.js';
import { buildSettings } from './schema.js';
import type { Settings } from './types.js';

const IN_MEMORY = '<config>';

/**
 * Parses and validates config text. `file` names the source in messages and
 * anchors relative paths (its directory); '' means in-memory text, anchored at
 * the current directory. Throws ConfigError listing every issue.
 */
export function parseConfig(text: string, file: string): Settings {
  const issues = collectIssues(text, file);
  if (issues.settings === undefined) throw new ConfigError(issues.list);
  return issues.settings;
}

/** Reads, parses and validates a config file. Throws ConfigError (also for unreadable files). */
export async function loadConfig(file: string): Promise<Settings> {
  return parseConfig(await readConfigText(file), file);
}

/** Every issue in a config file; [] when it is valid. Never throws ConfigError. */
export async function checkConfig(file: string): Promise<ConfigIssue[]> {
  try {
    await loadConfig(file);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.issues;
    throw error;
  }
}

/**
 * Settings with every default applied, for tests and tools. Not a valid
 * production config: server.domain has no default, so it is set to 'localhost'.
 */
export function defaultSettings(baseDir: string = process.cwd()): Settings {
  return buildSettings({ server: { domain: 'localhost' } }, { baseDir, file: '' }).settings;
}

async function readConfigText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ConfigError([{ file, line: 0, column: 0, key: '', message: `cannot read config file (${reason})` }]);
  }
}

function collectIssues(text: string, file: string): { list: ConfigIssue[]; settings?: Settings } {
  const shownFile = file === '' ? IN_MEMORY : file;
  const source = text.startsWith('\uFEFF') ? text.slice(1) : text;

  let document: RawTable;
  try {
    // BigInt integers keep `1` (integer) distinct from `1.0` (float) for type errors.
    document = parse(source, { integersAsBigInt: true }) as RawTable;
  } catch (error) {
    if (error instanceof TomlError) {
      return { list: [{ file: shownFile, line: error.line, column: error.column, key: '', message: syntaxMessage(error) }] };
    }
    return { list: [{ file: shownFile, line: 1, column: 1, key: '', message: `cannot parse: ${(error as Error).message}` }] };
  }

  const absolute = file === '' ? '' : resolve(file);
  const baseDir = file === '' ? process.cwd() : dirname(absolute);
  const { settings, issues } = buildSettings(document, { baseDir, file: absolute });
  if (issues.length === 0) return { list: [], settings };

  const locator = locateKeys(source);
  const list = issues
    .map((issue): ConfigIssue => ({ file: shownFile, ...locator.find(issue.path), key: formatPath(issue.path), message: issue.message }))
    .sort((a, b) => a.line - b.line || a.column - b.column);
  return { list };
}

// smol-toml's message carries a code excerpt after a blank line; keep the first line.
function syntaxMessage(error: TomlError): string {
  const first = error.message.split('\n')[0] ?? error.message;
  return `syntax error: ${first.replace(/^Invalid TOML document:\s*/, '')}`;
}
