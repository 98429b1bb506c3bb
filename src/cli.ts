#!/usr/bin/env node
// First, before any module that an older Node cannot evaluate.
import './runtime.js';
import cluster from 'node:cluster';
import type { AlephEdgeNode as AlephEdgeNodeType } from './app/index.js';
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createLogger, guardStdio } from './common/index.js';
import { ConfigError, checkConfig, formatIssue, loadConfig } from './config/index.js';
import { formatListener, isStatusCommand, runStatusCommand } from './status/index.js';

const DEFAULT_CONFIG = '/etc/aleph-edge/aleph-edge.toml';

const USAGE = `usage: aleph-edge <command> [options]

commands:
  run [--config FILE]          run the node (default config: $ALEPH_EDGE_CONFIG or ${DEFAULT_CONFIG})
  check-config FILE            validate a config file; prints every error as file:line:column
  status                       node status (listeners, programs, certificates, counters)
  vms                          running programs
  certs                        certificates with their expiry
  metrics                      Prometheus metrics
  stop HASH                    stop a program's execution
  instance start|stop|erase HASH
                               start an instance (INSTANCE message) now, stop it (ACPI shutdown), erase its disk
  reload                       re-read the config file (same as SIGHUP)
  drain                        finish in-flight requests, stop programs, exit
  login-url                    the URL that logs a browser in to /about/config (token from the status socket)
  version                      print the version
  build-runtime --out DIR      build the Debian 12 Python runtime for VM programs: DIR/runtime.squashfs,
                               its sha256 on the last line ([--cache DIR] [--package NAME]...; root)

Status commands talk to the status socket: --socket PATH (default $ALEPH_EDGE_SOCKET or
/run/aleph-edge/status.sock) or --config FILE to read it from the config; --json for scripts.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

class UsageError extends Error {}

/** parseArgs, strict, with its complaints (unknown option, missing value) as usage errors. */
function parse<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  const file = values.config ?? process.env.ALEPH_EDGE_CONFIG ?? DEFAULT_CONFIG;
  // A closed stderr must cost log lines, never the node (see common/log.ts).
  guardStdio();
  const log = createLogger('node');
  // Signals are handled from here on: one that comes while the node starts (or while
  // its config loads) is not lost.
  let exitCode = 0;
  let node: AlephEdgeNodeType | undefined;
  let done!: (code: number) => void;
  const finished = new Promise<number>((resolve) => (done = resolve));
  let shuttingDown = false;
  let signalledWhileStarting: string | undefined;
  const shutdown = (reason: string) => {
    if (!node) {
      // Still starting (a first ACME account, a new CA...): drain as soon as the node is
      // up; a second signal does not wait for that.
      if (signalledWhileStarting) process.exit(1);
      signalledWhileStarting = reason;
      log.info('shutting down once started', { reason, again: 'a second SIGINT or SIGTERM exits at once' });
      return;
    }
    if (shuttingDown) {
      // A second signal while draining: the operator does not want to wait.
      if (reason === 'SIGINT' || reason === 'SIGTERM') void node.hurry();
      return;
    }
    shuttingDown = true;
    log.info('shutting down', { reason, again: 'a second SIGINT or SIGTERM stops at once' });
    node.drain().then(() => done(exitCode), (error: Error) => {
      log.error('drain failed', { error: error.message });
      done(1);
    });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    void node?.reload().then((result) => {
      if (!result.ok) for (const line of result.errors) log.error('config error', { error: line });
    });
  });
  process.on('uncaughtException', (error) => {
    // Unknown state: log everything, stop programs, exit non-zero (systemd restarts us).
    log.error('uncaught exception', { error: error.stack ?? error.message });
    exitCode = 1;
    if (node) shutdown('uncaught exception');
    else done(1);
  });
  let settings;
  try {
    settings = await loadConfig(file);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.format()}\n`);
      return 1;
    }
    throw error;
  }
  // Loaded here so that the status commands start fast.
  const { AlephEdgeNode, NodeAlreadyRunningError } = await import('./app/index.js');
  try {
    node = await AlephEdgeNode.start(settings, { version: version(), onDrainRequested: () => shutdown('drain requested') });
  } catch (error) {
    if (error instanceof NodeAlreadyRunningError) {
      process.stderr.write(`${error.message}\n`);
      return 1;
    }
    log.error('failed to start', { error: (error as Error).message });
    return 1;
  }
  log.info('aleph-edge ready', { version: version(), domain: settings.server.domain, listeners: node.listeners().map(formatListener).join(', '), status_socket: settings.server.statusSocket });
  if (signalledWhileStarting) shutdown(signalledWhileStarting);
  return finished;
}

async function checkConfigCommand(argv: string[]): Promise<number> {
  const { positionals } = parse(argv, {}, true);
  if (positionals.length !== 1) throw new UsageError('check-config takes exactly one FILE');
  const file = positionals[0]!;
  const issues = await checkConfig(file);
  if (issues.length === 0) {
    process.stdout.write(`${file}: ok\n`);
    return 0;
  }
  for (const issue of issues) process.stderr.write(`${formatIssue(issue)}\n`);
  return 1;
}

async function buildRuntimeCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { out: { type: 'string' }, cache: { type: 'string' }, package: { type: 'string', multiple: true } });
  const { out: outDir, cache: cacheDir, package: packages = [] } = values;
  if (!outDir) throw new UsageError('build-runtime needs --out DIR');
  const { buildRuntime, RUNTIME_PACKAGES } = await import('./drivers/index.js');
  const { resolve } = await import('node:path');
  const started = Date.now();
  process.stderr.write(`building the runtime (${(packages.length ? packages : RUNTIME_PACKAGES).join(', ')}); a first build takes minutes\n`);
  try {
    const image = await buildRuntime({ outDir: resolve(outDir), cacheDir: cacheDir && resolve(cacheDir), packages: packages.length ? packages : undefined, onOutput: (chunk) => process.stderr.write(chunk) });
    process.stderr.write(`runtime ready in ${Math.round((Date.now() - started) / 1000)} s (cached as ${image.cached})\n`);
    process.stdout.write(`${image.path}\nsha256 ${image.sha256}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`aleph-edge build-runtime: ${(error as Error).message}\n`);
    return 1;
  }
}

async function statusCommand(command: string, argv: string[]): Promise<number> {
  // --config FILE: take the socket path from the node's config. The other options are
  // the status command's own (status/ parses them), so they pass through untouched.
  const { values, tokens } = parseArgs({ args: argv, options: { config: { type: 'string' } }, strict: false, allowPositionals: true, tokens: true });
  const configTokens = tokens.filter((t) => t.kind === 'option' && t.name === 'config');
  const rest = argv.filter((_, i) => !configTokens.some((t) => t.index === i || (t.kind === 'option' && t.inlineValue === false && t.index + 1 === i)));
  const configFile = values.config;
  if (configFile === true || (configTokens.length > 0 && !configFile)) throw new UsageError('--config needs a value');
  if (configFile && !rest.some((a) => a === '--socket' || a.startsWith('--socket='))) {
    const settings = await loadConfig(configFile);
    rest.push('--socket', settings.server.statusSocket);
  }
  return runStatusCommand([command, ...rest], { stdout: process.stdout, stderr: process.stderr });
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await run(rest);
      case 'check-config':
        return await checkConfigCommand(rest);
      case 'build-runtime':
        return await buildRuntimeCommand(rest);
      case 'version':
      case '--version':
        process.stdout.write(`aleph-edge ${version()}\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        return command === undefined ? 2 : 0;
      default:
        if (isStatusCommand(command)) return await statusCommand(command, rest);
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`aleph-edge: ${error.message}\n${USAGE}\n`);
      return 2;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.format()}\n`);
      return 1;
    }
    throw error;
  }
}

if (cluster.isWorker && process.argv[2] === 'worker') {
  const { runWorker } = await import('./cluster/index.js');
  runWorker();
} else {
  const code = await main(process.argv.slice(2));
  // `run` exits explicitly: after a drain nothing of ours should keep the process alive.
  if (process.argv[2] === 'run') process.exit(code);
  process.exitCode = code;
}
