import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EPHEMERAL_REDIS_ARGS, findExecutable, freePort, waitForRedisPing } from '../../scripts/redis-server.js';

export { freePort };

export interface TestRedis {
  url: string;
  port: number;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty (no persistence). */
  start(): Promise<void>;
  /** Stops it for good and removes its directory. */
  destroy(): Promise<void>;
}

/** A real, private redis-server for tests: loopback, no persistence, noeviction. */
export async function startTestRedis(extraArgs: string[] = []): Promise<TestRedis> {
  const binary = findExecutable(['redis-server', 'valkey-server']);
  if (!binary) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-redis-'));
  let child: ChildProcess | null = null;

  const start = async () => {
    child = spawn(binary, ['--bind', '127.0.0.1', '--port', String(port), ...EPHEMERAL_REDIS_ARGS, '--dir', dir, ...extraArgs], {
      stdio: 'ignore',
    });
    await waitForRedisPing(port, 10_000);
  };
  const stop = async () => {
    const running = child;
    child = null;
    if (!running || running.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill('SIGTERM');
    });
  };
  await start();
  const destroy = async () => {
    await stop();
    await rm(dir, { recursive: true, force: true });
  };
  return { url: `redis://127.0.0.1:${port}`, port, stop, start, destroy };
}
