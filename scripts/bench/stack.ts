import { freePort } from '../redis-server.js';
/** Starts the real stack (scripts/start.ts: private Redis, API, worker) for the bench and stops it. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';

import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export { freePort };

export interface Stack {
  base: string;
  launcher: ChildProcess;
  apiPid: number;
  /** The last few KiB the stack wrote (stdout log lines and stderr), for error reports. */
  tail(): string;
  stop(): Promise<void>;
}


/** Peak resident set (VmHWM) and current (VmRSS) of a process, in bytes. */
export async function memory(pid: number): Promise<{ hwm: number; rss: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { hwm: kb('VmHWM'), rss: kb('VmRSS') };
}

/** Resets VmHWM to the current RSS (Linux: "5" > clear_refs); false if the kernel refuses. */
export async function resetPeak(pid: number): Promise<boolean> {
  try {
    await writeFile(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export async function startStack(root: string, env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<Stack> {
  // Measure what production runs: the compiled build, fresh (tsx in the API would add its own memory).
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  // What `npm run build` does after tsc: the Lua scripts and pages next to the compiled modules, and
  // scrypt's native core.
  execFileSync(process.execPath, [path.join(root, 'scripts', 'copy-assets.mjs')], { cwd: root, stdio: 'inherit' });
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build-native.mjs')], { cwd: root, stdio: 'inherit' });
  const args = [path.join(root, 'dist', 'scripts', 'start.js')];
  const launcher = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdoutTail = '';
  launcher.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + String(d)).slice(-4000);
  });
  launcher.stdout?.on('data', (d: Buffer) => {
    stdoutTail = (stdoutTail + String(d)).slice(-6000);
  });
  const exited = new Promise<void>((resolve) => launcher.once('exit', () => resolve()));
  const stop = async () => {
    if (launcher.exitCode !== null || launcher.signalCode !== null) return;
    launcher.kill('SIGINT');
    const timer = setTimeout(() => launcher.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const seen = new Set<string>();
      let buffered = '';
      const timer = setTimeout(() => reject(new Error(`stack did not start in ${timeoutMs} ms:\n${stderr}`)), timeoutMs);
      launcher.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`launcher exited (${signal ?? code}) before the stack was up:\n${stderr}`));
      });
      // Keep draining stdout for the whole run (the API logs a line per request).
      launcher.stdout?.on('data', (d: Buffer) => {
        if (seen.size === 2) return;
        buffered += String(d);
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          if (line.includes('api_started')) seen.add('api');
          if (line.includes('worker_started')) seen.add('worker');
        }
        if (seen.size === 2) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const children = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(launcher.pid)], { encoding: 'utf8' });
    const apiLine = children.split('\n').find((l) => /app\/main\.(ts|js)/.test(l));
    if (!apiLine) throw new Error(`no API child of the launcher:\n${children}`);
    const apiPid = Number(apiLine.trim().split(/\s+/)[0]);
    return { base: `http://127.0.0.1:${env.PORT}`, launcher, apiPid, tail: () => `${stdoutTail}\n${stderr}`, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
