// The CLI's status subcommands: a thin client of the status socket. Exit codes:
// 0 success, 1 the node could not be reached or refused, 2 bad usage.

import { normalizeHash } from '../common/index.js';
import { StatusClient, StatusClientError } from './client.js';
import { formatCerts, formatStatus, formatVms } from './format.js';
import type { ReloadResult } from './types.js';
import type { InstanceResult } from './wire.js';
import { DEFAULT_STATUS_SOCKET } from './wire.js';

export interface TextSink {
  write(text: string): unknown;
}

export interface CommandIO {
  stdout: TextSink;
  stderr: TextSink;
  /** Defaults to process.env; tests pass their own. */
  env?: Record<string, string | undefined>;
}

export const STATUS_COMMANDS = ['status', 'vms', 'certs', 'metrics', 'stop', 'reload', 'drain', 'login-url', 'instance'] as const;
export type StatusCommand = (typeof STATUS_COMMANDS)[number];

export const STATUS_USAGE =
  'usage: aleph-edge status|vms|certs|metrics|reload|drain|login-url|stop <hash or unique prefix>|instance start|stop|erase <hash> [--socket PATH] [--json]';

const INSTANCE_ACTIONS = ['start', 'stop', 'erase'] as const;
/** `instance start` waits for the parent image's download and the VM to run. */
const INSTANCE_TIMEOUT_MS = 15 * 60_000;

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

interface Invocation {
  command: StatusCommand;
  args: string[];
  socket: string;
  json: boolean;
}

class UsageError extends Error {}

/** True when `name` is one of the subcommands handled here (for the CLI's dispatcher). */
export function isStatusCommand(name: string | undefined): name is StatusCommand {
  return (STATUS_COMMANDS as readonly string[]).includes(name ?? '');
}

/** Runs one subcommand; `argv` starts at the subcommand name (e.g. ['vms', '--json']). */
export async function runStatusCommand(argv: string[], io: CommandIO): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(STATUS_USAGE + '\n');
    return EXIT_OK;
  }
  let invocation: Invocation;
  try {
    invocation = parse(argv, io.env ?? process.env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`aleph-edge: ${err.message}\n${STATUS_USAGE}\n`);
    return EXIT_USAGE;
  }
  try {
    return await execute(invocation, new StatusClient(invocation.socket), io);
  } catch (err) {
    const message = err instanceof StatusClientError || err instanceof Error ? err.message : String(err);
    io.stderr.write(`aleph-edge: ${message}\n`);
    return EXIT_FAILED;
  }
}

function parse(argv: readonly string[], env: Record<string, string | undefined>): Invocation {
  const positional: string[] = [];
  let socket: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--json') json = true;
    else if (arg === '--socket') {
      socket = argv[++i];
      if (socket === undefined || socket === '') throw new UsageError('--socket needs a path');
    } else if (arg.startsWith('--socket=')) {
      socket = arg.slice('--socket='.length);
      if (socket === '') throw new UsageError('--socket needs a path');
    } else if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown option ${arg}`);
    else positional.push(arg);
  }
  const [name, ...args] = positional;
  if (!isStatusCommand(name)) throw new UsageError(name ? `unknown command ${name}` : 'missing command');
  if (name === 'instance') {
    const [action = '', hash = ''] = args;
    if (args.length !== 2 || !(INSTANCE_ACTIONS as readonly string[]).includes(action)) throw new UsageError('instance takes start, stop or erase and an instance hash');
    if (!normalizeHash(hash)) throw new UsageError(`malformed instance hash "${hash}" (expected 64 hex characters)`);
    return { command: name, args: [action, normalizeHash(hash)!], socket: socket ?? env.ALEPH_EDGE_SOCKET ?? DEFAULT_STATUS_SOCKET, json };
  }
  const expected = name === 'stop' ? 1 : 0;
  if (args.length !== expected) {
    throw new UsageError(expected === 1 ? `${name} takes exactly one program hash` : `${name} takes no arguments`);
  }
  return { command: name, args, socket: socket ?? env.ALEPH_EDGE_SOCKET ?? DEFAULT_STATUS_SOCKET, json };
}

async function execute({ command, args, json }: Invocation, client: StatusClient, io: CommandIO): Promise<number> {
  const out = (text: string) => io.stdout.write(text.endsWith('\n') ? text : text + '\n');
  const printJson = (value: unknown) => out(JSON.stringify(value, null, 2));
  switch (command) {
    case 'status':
      if (json) printJson(await client.json('GET', '/status'));
      else out(formatStatus(await client.status()));
      return EXIT_OK;
    case 'vms':
      if (json) printJson(await client.json('GET', '/vms'));
      else out(formatVms(await client.vms()));
      return EXIT_OK;
    case 'certs':
      if (json) printJson(await client.json('GET', '/certs'));
      else out(formatCerts(await client.certs()));
      return EXIT_OK;
    case 'metrics':
      // Prometheus text is already machine-readable; --json does not apply.
      out(await client.metrics());
      return EXIT_OK;
    case 'stop': {
      const target = await stopTarget(client, args[0] ?? '');
      if ('error' in target) {
        io.stderr.write(`aleph-edge: ${target.error}\n${target.usage ? `${STATUS_USAGE}\n` : ''}`);
        return target.usage ? EXIT_USAGE : EXIT_FAILED;
      }
      const result = await client.stopVm(target.hash);
      if (json) printJson(result);
      else out(`stopped ${result.stopped}`);
      return EXIT_OK;
    }
    case 'reload': {
      const result: ReloadResult = await client.reload();
      if (json) printJson(result);
      else if (result.ok) out('configuration reloaded');
      else {
        const lines = ['aleph-edge: reload rejected:', ...result.errors.map((e) => `  ${e}`)];
        io.stderr.write(lines.join('\n') + '\n');
      }
      return result.ok ? EXIT_OK : EXIT_FAILED;
    }
    case 'login-url': {
      // The token only ever leaves the node through this socket (file permissions are the access control).
      const login = await client.login();
      if (json) printJson(login);
      else out(login.url);
      return EXIT_OK;
    }
    case 'instance': {
      const [action, hash] = args as [string, string];
      const slow = new StatusClient(client.socketPath, INSTANCE_TIMEOUT_MS);
      const result = (await slow.json('POST', `/instances/${hash}/${action}`)) as InstanceResult;
      if (json) printJson(result);
      else if (action === 'start') out(result.changed ? `started ${hash}` : `${hash} was already running`);
      else if (action === 'stop') out(result.changed ? `stopped ${hash}` : `${hash} was not running`);
      else out(result.changed ? `erased ${hash}` : `${hash} had nothing to erase`);
      return EXIT_OK;
    }
    case 'drain': {
      const body = await client.json('POST', '/drain', [202]);
      if (json) printJson(body);
      else out('draining started; aleph-edge exits once in-flight requests finish');
      return EXIT_OK;
    }
  }
}

const MIN_PREFIX = 4;

/**
 * The hash `stop` means: a full hash, or a prefix of a running program's hash as
 * `vms` prints it (12 characters and an ellipsis, which may be pasted along), when
 * exactly one running program has it.
 */
async function stopTarget(client: StatusClient, arg: string): Promise<{ hash: string } | { error: string; usage?: boolean }> {
  const text = arg.trim().replace(/(…|\.\.\.)$/, '').toLowerCase();
  const full = normalizeHash(text);
  if (full) return { hash: full };
  if (!new RegExp(`^[0-9a-f]{${MIN_PREFIX},63}$`).test(text)) {
    return { error: `malformed program hash "${arg}" (expected 64 hex characters, or at least ${MIN_PREFIX} as \`vms\` prints them)`, usage: true };
  }
  const matches = [...new Set((await client.vms()).map((vm) => vm.hash).filter((hash) => hash.startsWith(text)))];
  if (matches.length === 1) return { hash: matches[0]! };
  if (matches.length === 0) return { error: `no running program has a hash starting with ${text} (see \`aleph-edge vms\`)` };
  return { error: `${text} is ambiguous: ${matches.length} running programs start with it (${matches.map((h) => h.slice(0, 16)).join(', ')}); give more characters` };
}
