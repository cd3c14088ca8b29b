import path from 'node:path';
import winston from 'winston';

export type Service = 'api' | 'worker' | 'launcher';

/**
 * The logging contract (SPEC §7): one JSON object per line with `timestamp`, `level`, `event`,
 * `service`; the message *is* the event name, a constant, and data goes in fields. Callers write
 * `log.info('file_uploaded', { size })`. Nothing here knows about requests; the request logger
 * chooses its fields, so raw paths, bodies and secrets cannot slip in by accident.
 */
export interface Logger {
  error(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  debug(event: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  close(): Promise<void>;
}

interface LoggerOptions {
  service: Service;
  level: string;
  /** Directory of `cinderbox-<service>.log`; empty = stdout only. */
  dir: string;
  /** Extra transport for tests. */
  stream?: NodeJS.WritableStream;
  silentStdout?: boolean;
}

const MAX_FILE_BYTES = 10 * 1024 * 1024;
const MAX_FILES = 5;

const eventFormat = winston.format((info) => {
  info.event = info.message;
  delete (info as { message?: unknown }).message;
  return info;
});

// Fixed key order makes `tail -F | jq` output easy to scan.
const lineFormat = winston.format.printf((info) => {
  const { timestamp, level, event, service, ...rest } = info as Record<string, unknown>;
  return JSON.stringify({ timestamp, level, event, service, ...rest }, errorReplacer);
});

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return errorDetailsForLog(value);
  if (typeof value === 'bigint') return Number(value);
  return value;
}

/** Log files (0640) and their directory (0750, when the process creates it): no other user reads them. */
export const LOG_FILE_MODE = 0o640;
export const LOG_DIR_MODE = 0o750;

export function createLogger(options: LoggerOptions): Logger {
  // Formatted once, on the logger: every transport writes the same line (measured: formatting per
  // transport was a noticeable share of a small upload's CPU).
  const format = winston.format.combine(winston.format.timestamp(), eventFormat(), lineFormat);
  const transports: winston.transport[] = [];
  if (!options.silentStdout) transports.push(new winston.transports.Console());
  if (options.dir !== '') {
    // One file per role (replicas of a role: docs/OPERATIONS.md "Scaling"). Readable by its owner
    // and group only: lines carry client addresses when LOG_IP=full.
    transports.push(
      new winston.transports.File({
        filename: path.join(options.dir, `cinderbox-${options.service}.log`),
        maxsize: MAX_FILE_BYTES,
        maxFiles: MAX_FILES,
        tailable: true,
        options: { flags: 'a', mode: LOG_FILE_MODE },
      }),
    );
  }
  if (options.stream) transports.push(new winston.transports.Stream({ stream: options.stream }));
  const root = winston.createLogger({
    format,
    level: options.level,
    defaultMeta: { service: options.service },
    transports,
    exitOnError: false,
  });
  return wrap(root, root);
}

function wrap(instance: winston.Logger, root: winston.Logger): Logger {
  // winston formats every line before its transports drop those below their level: a `debug` line
  // at LOG_LEVEL=info cost its JSON (the janitor writes one per deferred job). Checked first instead.
  const at = (level: 'error' | 'warn' | 'info' | 'debug') => (event: string, fields?: Record<string, unknown>) => {
    if (instance.isLevelEnabled(level)) instance.log(level, event, fields);
  };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (fields) => wrap(instance.child(fields), root),
    close: () =>
      new Promise<void>((resolve) => {
        root.on('finish', () => resolve());
        root.end();
      }),
  };
}

/** A logger that writes nothing: for unit tests that do not look at logs. */
export function createSilentLogger(): Logger {
  const silent: Logger = {
    error: () => undefined,
    warn: () => undefined,
    info: () => undefined,
    debug: () => undefined,
    child: () => silent,
    close: () => Promise.resolve(),
  };
  return silent;
}

/**
 * Error text safe for logs: file-system errors carry a path (a blob id), so they are reduced to
 * their code and system call; other errors (Redis, BullMQ, ours) keep their message, with long
 * id-like tokens (blob ids in job ids, lookup ids) masked.
 */
export function errorForLog(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const syscall = (error as { syscall?: unknown } | null)?.syscall;
  // A system call's error names the path it failed on: keep only its code and call.
  if (typeof code === 'string' && typeof syscall === 'string') return `${code} (${syscall})`;
  return (error instanceof Error ? error.message : String(error)).replace(/[A-Za-z0-9_-]{32,}/g, '[id]');
}

/**
 * An error as the log's `error` field, `{ name, message, stack }`, with errorForLog's message: the
 * stack keeps its frames (where the code failed) but its first line is rebuilt from the safe message,
 * since V8 repeats the raw one there (an fs error's path, and so its blob id, would come back).
 */
export function errorDetailsForLog(error: Error): { name: string; message: string; stack: string } {
  const message = errorForLog(error);
  const frames = (error.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line));
  const stack = [`${error.name}: ${message}`, ...frames.map((line) => line.replace(/[A-Za-z0-9_-]{32,}/g, '[id]'))].join('\n');
  return { name: error.name, message, stack };
}

/**
 * Node prints process warnings (deprecations, e.g. a dependency's notice about the Node version) to
 * stderr as plain text; operators read JSON lines. Routes them into the log instead. Only the two
 * processes' entry points call this.
 */
export function logProcessWarnings(log: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning) => log.warn('node_warning', { name: warning.name, detail: warning.message.slice(0, 500) }));
}
