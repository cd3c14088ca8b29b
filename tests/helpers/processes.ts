import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');

export type LogEvent = Record<string, unknown> & { event?: unknown };

export interface RunningProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** The JSON lines printed so far, in order. */
  events: () => LogEvent[];
  /** A position in the event stream: pass it as `since` to wait only for what comes after. */
  mark(): number;
  /**
   * Resolves with the first JSON line whose `event` matches (and `where`, when given), among the
   * lines printed after `since` (default: from the start); rejects at the timeout or on exit.
   */
  waitForEvent(event: string, timeoutMs?: number, options?: { since?: number; where?: (line: LogEvent) => boolean }): Promise<LogEvent>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs one of the project's TypeScript entry points as a real process (via the tsx loader). */
export function runTs(entry: string, env: Record<string, string | undefined>, options: { args?: string[] } = {}): RunningProcess {
  const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, entry), ...(options.args ?? [])], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let pending = '';
  const events: LogEvent[] = [];
  const waiters = new Set<(line: LogEvent, index: number) => void>();
  child.stdout!.on('data', (d: Buffer) => {
    const text = d.toString();
    out += text;
    const lines = (pending + text).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      let parsed: LogEvent;
      try {
        parsed = JSON.parse(line) as LogEvent;
      } catch {
        continue;
      }
      events.push(parsed);
      for (const waiter of [...waiters]) waiter(parsed, events.length - 1);
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    events: () => events,
    mark: () => events.length,
    exited,
    waitForEvent: (event, timeoutMs = 20_000, options = {}) =>
      new Promise((resolve, reject) => {
        const since = options.since ?? 0;
        const matches = (line: LogEvent, index: number) => index >= since && line.event === event && (options.where?.(line) ?? true);
        const seen = events.find(matches);
        if (seen) return resolve(seen);
        const waiter = (line: LogEvent, index: number) => {
          if (!matches(line, index)) return;
          finish();
          resolve(line);
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`no ${event} within ${timeoutMs} ms; stdout: ${out.slice(-2000)} stderr: ${err.slice(-2000)}`));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(waiter);
        };
        waiters.add(waiter);
        void exited.then(() => {
          if (!waiters.has(waiter)) return;
          finish();
          reject(new Error(`process exited before ${event}; stderr: ${err.slice(-2000)}`));
        });
      }),
  };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The complete lines a process (or `docker logs`) wrote that are not one JSON object each, tagged
 * with their stream. stderr counts as much as stdout: `docker logs` merges both and operators pipe
 * it to jq (SPEC §7), and a library's console.warn (node-cron's "[NODE-CRON] [WARN]") lands there.
 */
export function nonJsonLines(proc: Pick<RunningProcess, 'stdout' | 'stderr'>): string[] {
  return (['stdout', 'stderr'] as const).flatMap((stream) =>
    proc[stream]()
      .split('\n')
      .slice(0, -1) // the text after the last newline is a line still being written (or nothing)
      .filter((line) => !isJsonObject(line))
      .map((line) => `${stream}: ${line}`),
  );
}

function isJsonObject(line: string): boolean {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}
