import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { findExecutable } from '../../scripts/redis-server.js';

/**
 * The Docker engine for the deploy suite: the one already answering, or else a dockerd this suite
 * starts itself (root; `--iptables=false`: no outside network is needed) and stops when done. An
 * engine that already ran is never stopped. Where no engine can run, `available` says why.
 */

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; never rejects, so callers assert on the code with the output at hand. */
export function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { cwd: options.cwd, env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The last lines of a command's output, for a failure message. */
export function tail(text: string, lines = 25): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export interface Engine {
  docker: string;
  compose: string;
  /** Server version, e.g. 20.10.24. */
  version: string;
  /** The dockerd this suite started, or null when one was already running. */
  started: { pid: number; logFile: string } | null;
  /** Stops the dockerd this suite started (nothing otherwise); waits for it to exit. */
  stop(): Promise<void>;
}

export type EngineProbe = { available: true; engine: Engine } | { available: false; reason: string };

async function serverVersion(docker: string): Promise<string | null> {
  const result = await run(docker, ['version', '--format', '{{.Server.Version}}'], { timeoutMs: 15_000 });
  return result.code === 0 ? result.stdout.trim() : null;
}

export async function findOrStartEngine(options: { startTimeoutMs?: number } = {}): Promise<EngineProbe> {
  const docker = findExecutable(['docker']);
  const compose = findExecutable(['docker-compose']);
  if (!docker || !compose)
    return { available: false, reason: 'no docker or docker-compose command (apt-get install -y docker.io docker-compose)' };

  const running = await serverVersion(docker);
  if (running) return { available: true, engine: { docker, compose, version: running, started: null, stop: () => Promise.resolve() } };

  if (process.env.DOCKER_HOST) return { available: false, reason: `DOCKER_HOST=${process.env.DOCKER_HOST} does not answer` };
  const dockerd = findExecutable(['dockerd']) ?? (existsSync('/usr/sbin/dockerd') ? '/usr/sbin/dockerd' : null);
  if (!dockerd) return { available: false, reason: 'no engine is running and dockerd is not installed' };
  if (process.getuid?.() !== 0) return { available: false, reason: 'no engine is running and only root can start dockerd' };

  const logFile = path.join(await mkdtemp(path.join(os.tmpdir(), 'cbx-dockerd-')), 'dockerd.log');
  const log = openSync(logFile, 'a');
  // No default bridge (compose makes its own networks, builds use the host's): nothing left on the host.
  const child = spawn(dockerd, ['--iptables=false', '--bridge=none'], { stdio: ['ignore', log, log] });
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Last resort if the suite dies without its afterAll: never leave a dockerd behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async () => {
    process.off('exit', killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  while (Date.now() < deadline && !hasExited(child)) {
    const version = await serverVersion(docker);
    if (version) return { available: true, engine: { docker, compose, version, started: { pid: child.pid!, logFile }, stop } };
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop();
  return { available: false, reason: `dockerd could not start here:\n${tail(readFileSync(logFile, 'utf8'), 10)}` };
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}
