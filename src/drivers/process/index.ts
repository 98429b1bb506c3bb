// The `process` driver: runs a program as a local child process listening on a
// loopback port. The development default and the driver most tests use.

import { rmSync } from 'node:fs';
import { createLogger, shortHash, type Logger } from '../../common/index.js';
import type { Program, ProcessLaunch, ProcessSandbox } from '../../programs/index.js';
import { GUEST_LINK_LOOPBACK, guestEnv, openGuestLink, type GuestLink } from '../guest-link.js';
import { DriverStartError, formatEndpoint, type Driver, type Endpoint, type Instance, type Slot } from '../types.js';
import { asgiCommand } from './asgi.js';
import { buildProgramEnv } from './env.js';
import { ProcessInstance } from './instance.js';
import { captureOutput, DEFAULT_OUTPUT_LIMITS, LOOPBACK_HOST, pickFreePort, withFields, type OutputLimits } from '../host/index.js';
import { ExecutionRecords } from './records.js';
import { reapOutbound } from '../outbound.js';
import { prepareSandbox, SANDBOX_PROGRAM_HOST, SANDBOX_PROGRAM_PORT, temporaryRunRoot, type SandboxRun } from './sandbox.js';
import { spawnProgram } from './spawn.js';
import { ForkServer, programPid } from './fork-server.js';
import type { Readable } from 'node:stream';
import { ASGI_SHUTDOWN_S, stopGrace } from '../stop-grace.js';

export interface ProcessDriverOptions {
  /** Time between SIGTERM and SIGKILL when stopping a program's process group. */
  stopGraceMs: number;
  /** Bounds on captured program output (defaults: 4 KiB lines, 200 lines/s, burst 1000). */
  output?: Partial<OutputLimits>;
  /**
   * Folder for one record per running program. When set, programs a previous node
   * left running (it was killed with SIGKILL, so it could not stop them) are killed
   * when this driver is created.
   */
  stateDir?: string;
  /** Interpreter for ASGI programs (drivers.process.python); default 'python3'. */
  python?: string;
  /** Parent of sandboxed executions' run folders (their unix sockets); default a fresh temporary folder. */
  runDir?: string;
  /** Local ASGI programs are forked from a pre-imported interpreter (drivers.process.fork_server). */
  forkServer?: boolean;
}

export class ProcessDriver implements Driver {
  readonly name = 'process';
  private readonly log = createLogger('driver.process');
  private readonly programLog = createLogger('program');
  private readonly outputLimits: OutputLimits;
  private readonly records: ExecutionRecords | undefined;
  private runRoot: Promise<string> | undefined;
  private readonly forkServer: ForkServer | undefined;

  constructor(private readonly options: ProcessDriverOptions) {
    if (!Number.isFinite(options.stopGraceMs) || options.stopGraceMs < 0) {
      throw new RangeError(`stopGraceMs must be a non-negative number, got ${options.stopGraceMs}`);
    }
    this.outputLimits = { ...DEFAULT_OUTPUT_LIMITS, ...options.output };
    if (options.stateDir) {
      this.records = new ExecutionRecords(options.stateDir, this.log);
      this.records.reap();
    }
    // Run folders a previous node left (killed with SIGKILL): their programs were just reaped.
    if (options.runDir) {
      reapOutbound(options.runDir);
      rmSync(options.runDir, { recursive: true, force: true });
    }
    if (options.forkServer) this.forkServer = new ForkServer(options.python ?? 'python3', this.log.child('forkserver'));
  }

  async start(program: Program, slot: Slot): Promise<Instance> {
    const { launch } = program;
    if (launch.kind !== 'process') {
      throw new DriverStartError(`the process driver cannot launch a ${String((launch as { kind: unknown }).kind)} program`);
    }
    const hash = shortHash(program.hash);
    // The program's pid, once spawned: its guest link accepts only its process tree.
    const owner: { pid?: number } = {};
    const started = launch.sandbox ? await this.sandboxed(launch, launch.sandbox, slot, program.sender ?? '') : await this.local(launch, slot, program.sender ?? '', owner);
    const { env, command, endpoint, link, run, forked } = started;
    let child;
    try {
      child = await spawnProgram({ ...launch, command }, env, { fd3: forked });
    } catch (error) {
      await link?.close();
      await run?.remove();
      throw error;
    }
    owner.pid = child.pid;
    // Forked: the program is the fork server's child, not the client's; its tree is the one to accept.
    if (forked) void programPid(child.stdio[3] as Readable).then((pid) => { if (pid) owner.pid = pid; });
    this.records?.add(child.pid, program.hash);

    const log: Logger = withFields(this.log, { hash, exec: slot.executionId, pid: child.pid });
    captureOutput(
      child,
      {
        line: (stream, text) => {
          this.programLog.info(text, { hash, stream });
          slot.output?.(stream, text);
        },
        dropped: (count) => this.programLog.warn('program output rate-limited, lines dropped', { hash, dropped: count }),
      },
      this.outputLimits,
    );
    // After 'spawn', errors only come from kill() on a gone process; exit handling covers it.
    child.on('error', (err) => log.debug('child process error', { error: err.message }));

    log.info('program started', { endpoint: formatEndpoint(endpoint), command: (launch.command[0] ?? launch.asgi?.app ?? ''), sandboxed: launch.sandbox !== undefined, internet: run?.internet, guest_api: started.guestUrl || undefined });
    const records = this.records;
    const onGone = () => {
      records?.remove(child.pid);
      void link?.close();
      void run?.remove();
    };
    const grace = stopGrace(this.options.stopGraceMs, launch.asgi ? ASGI_SHUTDOWN_S : 0);
    const instance = new ProcessInstance(child, endpoint, grace, log, onGone);
    if (link) instance.guestApi = { kind: 'tcp', host: link.host, port: link.port };
    return instance;
  }

  /** A local program (trusted by the operator): the host's network, a loopback port, a guest link on the host. */
  private async local(launch: ProcessLaunch, slot: Slot, sender: string, owner: { pid?: number }): Promise<Prepared> {
    const port = await pickFreePort(LOOPBACK_HOST);
    // The guest API on a loopback port of its own (not on the programs' address, see GUEST_LINK_LOOPBACK).
    let link: GuestLink | undefined;
    let guest: Record<string, string> = {};
    if (slot.guestApi) {
      link = await openGuestLink({ socket: slot.guestApi.socket, host: GUEST_LINK_LOOPBACK, peerProcess: () => owner.pid });
      guest = guestEnv(link.url, sender, slot.guestApi.socket);
    }
    const listen = { host: LOOPBACK_HOST, port };
    const env = buildProgramEnv(launch, listen, process.env, guest);
    const asgi = launch.asgi ? asgiCommand(launch.asgi, this.options.python ?? 'python3', listen, env, launch.env.PYTHONPATH) : undefined;
    const endpoint: Endpoint = { kind: 'tcp', host: LOOPBACK_HOST, port };
    // asgiCommand is [python, -m, aleph_asgi, ...its arguments]; a wrapper command (launch.command) is run as given.
    if (asgi && this.forkServer && launch.command.length === 0) {
      return { env, command: this.forkServer.command(asgi.slice(3)), endpoint, link, guestUrl: link?.url ?? '', forked: true };
    }
    const command = asgi ? [...launch.command, ...asgi] : launch.command;
    return { env, command, endpoint, link, guestUrl: link?.url ?? '' };
  }

  /** A program in bubblewrap with its own network namespace (sandbox.ts). */
  private async sandboxed(launch: ProcessLaunch, sandbox: ProcessSandbox, slot: Slot, sender: string): Promise<Prepared> {
    this.runRoot ??= this.options.runDir ? Promise.resolve(this.options.runDir) : temporaryRunRoot();
    const listen = { host: SANDBOX_PROGRAM_HOST, port: SANDBOX_PROGRAM_PORT };
    const env = buildProgramEnv(launch, listen, process.env, {});
    const inner = launch.asgi ? asgiCommand(launch.asgi, this.options.python ?? 'python3', listen, env, launch.env.PYTHONPATH) : launch.command;
    const run = await prepareSandbox(sandbox, await this.runRoot, slot.executionId, inner, slot.guestApi?.socket);
    if (run.internetMissing) this.log.warn('program asked for internet; it runs without', { exec: slot.executionId, reason: run.internetMissing });
    if (slot.guestApi) Object.assign(env, guestEnv(run.guestUrl, sender, run.guestSocket));
    return { env, command: run.argv, endpoint: { kind: 'unix', path: run.httpSocket }, run, guestUrl: run.guestUrl };
  }
}

interface Prepared {
  env: Record<string, string>;
  command: string[];
  endpoint: Endpoint;
  link?: GuestLink;
  run?: SandboxRun;
  guestUrl: string;
  /** Started through the fork server (fork-server.ts). */
  forked?: boolean;
}

export type { OutputLimits } from '../host/index.js';
