// One logger for the node: human-readable single lines (`time LEVEL component message k=v`)
// on stderr. Level from ALEPH_EDGE_LOG (debug|info|warn|error|silent), default info.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, string | number | boolean | null | undefined>;
export interface LogRecord { time: Date; level: LogLevel; component: string; message: string; fields: LogFields }
export type LogSink = (record: LogRecord) => void;

const ORDER: Record<LogLevel | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

function levelFromEnv(): number {
  const name = (process.env.ALEPH_EDGE_LOG ?? 'info').toLowerCase();
  return ORDER[name as LogLevel] ?? ORDER.info;
}

let threshold = levelFromEnv();
const sinks = new Set<LogSink>();

function formatValue(value: LogFields[string]): string {
  if (value === undefined || value === null) return '-';
  const text = String(value);
  return /[\s"=]/.test(text) ? JSON.stringify(text) : text;
}

export function formatRecord(record: LogRecord): string {
  let line = `${record.time.toISOString()} ${record.level.toUpperCase().padEnd(5)} ${record.component.padEnd(12)} ${record.message}`;
  for (const [key, value] of Object.entries(record.fields)) {
    if (value !== undefined) line += ` ${key}=${formatValue(value)}`;
  }
  return line;
}

function writeStderr(record: LogRecord): void {
  process.stderr.write(formatRecord(record) + '\n');
}

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(component: string): Logger;
}

export function createLogger(component: string): Logger {
  const emit = (level: LogLevel, message: string, fields: LogFields = {}) => {
    if (ORDER[level] < threshold && sinks.size === 0) return;
    const record: LogRecord = { time: new Date(), level, component, message, fields };
    for (const sink of sinks) sink(record);
    if (ORDER[level] >= threshold) writeStderr(record);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (name) => createLogger(`${component}.${name}`),
  };
}

/** Extra sinks see every record regardless of level (tests capture logs this way). */
export function addLogSink(sink: LogSink): () => void {
  sinks.add(sink);
  return () => sinks.delete(sink);
}

export function setLogLevel(level: LogLevel | 'silent'): void {
  threshold = ORDER[level];
}

/** Short hash for log lines: first 12 hex chars. */
export function shortHash(hash: string): string {
  return hash.slice(0, 12);
}
