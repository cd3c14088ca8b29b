import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { testEnv, uniquePrefix } from './app.js';
import { runTs, type RunningProcess } from './processes.js';
import { freePort } from './redis-server.js';

/** The API and the janitor as two real processes, on the suite's Redis under a private prefix and directory. */
export interface Stack {
  url: string;
  dir: string;
  prefix: string;
  /** The environment both processes were started with (use it for scripts that must see the same service). */
  env: Record<string, string>;
  api: RunningProcess;
  worker: RunningProcess;
  /** Stops the worker (SIGTERM, drained) and starts a new one with the same environment. */
  restartWorker(): Promise<void>;
  /** SIGTERM to both; resolves when both have exited (their logs flushed), then removes the directory. */
  stop(options?: { keepDir?: boolean }): Promise<void>;
}

export async function startStack(options: { env?: Record<string, string>; workerEnv?: Record<string, string> } = {}): Promise<Stack> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-stack-'));
  const prefix = uniquePrefix();
  const port = await freePort();
  const env = testEnv(dir, prefix, inject('redisUrl'), { PORT: String(port), ...options.env });
  const api = runTs('app/main.ts', env);
  const startWorker = async () => {
    const worker = runTs('workers/main.ts', { ...env, ...options.workerEnv });
    await worker.waitForEvent('worker_started');
    return worker;
  };
  const [, worker] = await Promise.all([api.waitForEvent('api_started'), startWorker()]);
  const stack: Stack = {
    url: `http://127.0.0.1:${port}`,
    dir,
    prefix,
    env,
    api,
    worker,
    restartWorker: async () => {
      stack.worker.child.kill('SIGTERM');
      await stack.worker.exited;
      stack.worker = await startWorker();
    },
    stop: async ({ keepDir = false } = {}) => {
      for (const proc of [stack.api, stack.worker])
        if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGTERM');
      await Promise.all([stack.api.exited, stack.worker.exited]);
      if (!keepDir) await rm(dir, { recursive: true, force: true });
    },
  };
  return stack;
}
