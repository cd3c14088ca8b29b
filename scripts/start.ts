/**
 * `npm start`: Cinderbox on one machine. When neither REDIS_URL nor REDIS_SENTINELS is set, runs a private Redis (valkey-server
 * or redis-server from PATH) on a unix socket only this user can reach, with no persistence and
 * `noeviction`, its log under var/redis;
 * then the API and the janitor worker as child processes. Ctrl-C or SIGTERM stops all of them; if
 * one child dies, the others are stopped and the launcher exits non-zero.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { API_MALLOC_ENV, API_NODE_FLAGS } from '../app/shared/heap.js';
import { loadOrCreateLocalSecret } from '../app/shared/secret.js';
import { EPHEMERAL_REDIS_ARGS, findExecutable, waitForRedisPing } from './redis-server.js';

const say = (line: string) => process.stderr.write(`cinderbox: ${line}\n`);

const here = path.dirname(fileURLToPath(import.meta.url));
// Built: dist/scripts/start.js runs dist/app/main.js. From source (tests, via tsx): the .ts files.
const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const apiEntry = path.join(here, '..', 'app', `main${ext}`);
const workerEntry = path.join(here, '..', 'workers', `main${ext}`);

const children: { name: string; process: ChildProcess }[] = [];
let stopping = false;
let exitCode = 0;
/** The private Redis's socket directory, removed once Redis has stopped. */
let socketDir: string | undefined;

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stopAll(code: number) {
  if (stopping) return;
  stopping = true;
  exitCode = code;
  // The API and worker first (the worker finishes its active job), Redis last.
  const apps = children.filter((c) => c.name !== 'redis');
  for (const c of apps) c.process.kill('SIGTERM');
  await Promise.all(apps.map((c) => exited(c.process)));
  const redis = children.find((c) => c.name === 'redis');
  if (redis) {
    redis.process.kill('SIGTERM');
    await exited(redis.process);
  }
  if (socketDir) await rm(socketDir, { recursive: true, force: true });
  say(`stopped (exit ${exitCode})`);
  process.exit(exitCode);
}

function run(name: string, command: string, args: string[], env: NodeJS.ProcessEnv, options: { detached?: boolean } = {}): ChildProcess {
  const child = spawn(command, args, { env, stdio: ['ignore', 'inherit', 'inherit'], detached: options.detached ?? false });
  children.push({ name, process: child });
  child.once('exit', (code, signal) => {
    if (stopping) return;
    say(`${name} exited unexpectedly (${signal ?? `code ${code}`}); stopping the others`);
    void stopAll(1);
  });
  return child;
}

process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));

// Memory tuning measured in docs/BENCHMARKS.md (the image sets the same), from app/shared/heap.ts:
// glibc's settings (fewer arenas, large buffers returned when freed) and V8's flags (a smaller
// young generation, an old generation kept close to what is live).
const env: NodeJS.ProcessEnv = { ...API_MALLOC_ENV, ...process.env };
const nodeFlags = API_NODE_FLAGS;
if (!env.CINDERBOX_SECRET && env.NODE_ENV !== 'production') {
  try {
    env.CINDERBOX_SECRET = await loadOrCreateLocalSecret();
  } catch (error) {
    say((error as Error).message);
    process.exit(78);
  }
}

// With REDIS_URL or REDIS_SENTINELS set, the API and worker use that Redis; otherwise a private one.
if (!env.REDIS_URL && !env.REDIS_SENTINELS) {
  const binary = findExecutable(['valkey-server', 'redis-server']);
  if (!binary) {
    say('no valkey-server or redis-server on PATH.');
    say('  Debian/Ubuntu: sudo apt-get install -y redis-server');
    say('  macOS:         brew install valkey');
    say('  or point Cinderbox at a running server: REDIS_URL=redis://host:6379 npm start');
    process.exit(1);
  }
  const dir = path.resolve('var', 'redis');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // A unix socket in a directory of its own (mode 0700), not a loopback port: on a shared machine
  // any local user could reach a TCP port, and this Redis has no password. In the temp directory, since
  // a socket's path is limited to ~100 bytes and a checkout's may be longer; one per launcher, so two
  // launchers in one checkout never share a Redis.
  socketDir = await mkdtemp(path.join(os.tmpdir(), 'cinderbox-redis-'));
  const socket = path.join(socketDir, 'redis.sock');
  // Detached: Ctrl-C reaches only the launcher and the apps, so Redis outlives them until they have
  // finished shutting down. No persistence: wrapped keys must never reach disk (SPEC §4.5).
  run(
    'redis',
    binary,
    [
      '--port',
      '0',
      '--unixsocket',
      socket,
      '--unixsocketperm',
      '700',
      ...EPHEMERAL_REDIS_ARGS,
      '--dir',
      dir,
      '--logfile',
      path.join(dir, 'redis.log'),
      '--loglevel',
      'warning',
    ],
    // Redis needs nothing of ours: not the secret, nor any credential the environment holds.
    { PATH: env.PATH },
    { detached: true },
  );
  env.REDIS_URL = pathToFileURL(socket).href.replace(/^file:/, 'unix:');
  try {
    await waitForRedisPing(socket, 10_000);
  } catch (error) {
    // Detached, Redis would outlive us: stop it before leaving.
    say(`${path.basename(binary)} did not answer: ${(error as Error).message} (its log: ${path.join(dir, 'redis.log')})`);
    await stopAll(1);
  }
  say(`private ${path.basename(binary)} on ${socket}, reachable by this user only (no persistence, noeviction)`);
}

// Children inherit our exec arguments so `tsx` keeps working when the launcher runs from source.
run('api', process.execPath, [...nodeFlags, ...process.execArgv, apiEntry], env);
run('worker', process.execPath, [...nodeFlags, ...process.execArgv, workerEntry], env);
say(`API on http://${env.HOST ?? '127.0.0.1'}:${env.PORT ?? '8000'}  (Ctrl-C stops everything)`);
