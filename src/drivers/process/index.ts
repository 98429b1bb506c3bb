// The `process` driver: runs a program as a local child process listening on a
// loopback port. The development default and the driver most tests use.

import { createLogger, shortHash, type Logger } from '../../common/index.js';
import type { Program } from '../../programs/index.js';
import { GUEST_LINK_LOOPBACK, guestEnv, openGuestLink, type GuestLink } from '../guest-link.js';
import { DriverStartError, type Driver, type Instance, type Slot } from '../types.js';
import { asgiCommand } from './asgi.js';
import { buildProgramEnv } from './env.js';
import { ProcessInstance } from './instance.js';
import { captureOutput, DEFAULT_OUTPUT_LIMITS, type OutputLimits } from './output.js';
import { LOOPBACK_HOST, pickFreePort } from './port.js';
import { ExecutionRecords } from './records.js';
import { spawnProgram } from './spawn.js';
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
}

export class ProcessDriver implements Driver {
  readonly name = 'process';
  private readonly log = createLogger('driver.process');
  private readonly programLog = createLogger('program');
  private readonly outputLimits: OutputLimits;
  private readonly records: ExecutionRecords | undefined;

  constructor(private readonly options: ProcessDriverOptions) {
    if (!Number.isFinite(options.stopGraceMs) || options.stopGraceMs < 0) {
      throw new RangeError(`stopGraceMs must be a non-negative number, got ${options.stopGraceMs}`);
    }
    this.outputLimits = { ...DEFAULT_OUTPUT_LIMITS, ...options.output };
    if (options.stateDir) {
      this.records = new ExecutionRecords(options.stateDir, this.log);
      this.records.reap();
    }
  }

  async start(program: Program, slot: Slot): Promise<Instance> {
    const { launch } = program;
    if (launch.kind !== 'process') {
      throw new DriverStartError(`the process driver cannot launch a ${String((launch as { kind: unknown }).kind)} program`);
    }
    const hash = shortHash(program.hash);
    const port = await pickFreePort(LOOPBACK_HOST);
    // The guest API on a loopback port of its own (not on the programs' address, see
    // GUEST_LINK_LOOPBACK); a sandboxed program cannot see the socket file.
    let link: GuestLink | undefined;
    let guest: Record<string, string> = {};
    if (slot.guestApi) {
      link = await openGuestLink({ socket: slot.guestApi.socket, host: GUEST_LINK_LOOPBACK });
      guest = guestEnv(link.url, program.sender ?? '', launch.sandboxed ? '' : slot.guestApi.socket);
    }
    const env = buildProgramEnv(launch, { host: LOOPBACK_HOST, port }, process.env, guest);
    const command = launch.asgi ? asgiCommand(launch, launch.asgi, this.options.python ?? 'python3', { host: LOOPBACK_HOST, port }, env) : launch.command;
    let child;
    try {
      child = await spawnProgram({ ...launch, command }, env);
    } catch (error) {
      await link?.close();
      throw error;
    }
    this.records?.add(child.pid, program.hash);

    const log: Logger = childLogger(this.log, { hash, exec: slot.executionId, pid: child.pid });
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

    log.info('program started', { port, command: command[0], ...(launch.asgi ? { asgi: launch.asgi.app } : {}), guest_api: link?.url });
    const records = this.records;
    const onGone = () => {
      records?.remove(child.pid);
      void link?.close();
    };
    const grace = stopGrace(this.options.stopGraceMs, launch.asgi ? ASGI_SHUTDOWN_S : 0);
    const instance = new ProcessInstance(child, { kind: 'tcp', host: LOOPBACK_HOST, port }, grace, log, onGone);
    if (link) instance.guestApi = { kind: 'tcp', host: link.host, port: link.port };
    return instance;
  }
}

/** A logger that adds fixed fields to every record. */
function childLogger(base: Logger, fixed: Record<string, string | number>): Logger {
  return {
    debug: (m, f) => base.debug(m, { ...fixed, ...f }),
    info: (m, f) => base.info(m, { ...fixed, ...f }),
    warn: (m, f) => base.warn(m, { ...fixed, ...f }),
    error: (m, f) => base.error(m, { ...fixed, ...f }),
    child: (name) => childLogger(base.child(name), fixed),
  };
}

export type { OutputLimits } from './output.js';
