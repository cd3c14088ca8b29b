import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');

export interface RunningProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first stdout JSON line whose `event` matches. */
  waitForEvent(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
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
  const waiters: { event: string; resolve: (v: Record<string, unknown>) => void }[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    const before = out;
    out += d.toString();
    const lines = out.slice(before.lastIndexOf('\n') + 1).split('\n');
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        for (const w of waiters.filter((x) => x.event === parsed.event)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(parsed);
        }
      } catch {
        // a partial line; the next chunk completes it
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForEvent: (event, timeoutMs = 20_000) =>
      new Promise((resolve, reject) => {
        const seen = out.split('\n').find((l) => l.includes(`"event":"${event}"`));
        if (seen) return resolve(JSON.parse(seen) as Record<string, unknown>);
        const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms; stdout: ${out.slice(-2000)} stderr: ${err.slice(-2000)}`)), timeoutMs);
        waiters.push({ event, resolve: (v) => (clearTimeout(timer), resolve(v)) });
        void exited.then(() => reject(new Error(`process exited before ${event}; stderr: ${err.slice(-2000)}`)));
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
