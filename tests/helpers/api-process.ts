import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { testEnv, uniquePrefix } from './app.js';
import { runTs, type RunningProcess } from './processes.js';
import { freePort } from './redis-server.js';

export interface ApiProcess {
  url: string;
  port: number;
  prefix: string;
  env: Record<string, string>;
  proc: RunningProcess;
  close(): Promise<void>;
}

/** The API as a real process (`app/main.ts`) on a free loopback port, with the suite's Redis unless given. */
export async function startApiProcess(
  env: Record<string, string> = {},
  options: { redisUrl?: string; prefix?: string; dir?: string } = {},
): Promise<ApiProcess> {
  const dir = options.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'cbx-api-')));
  const prefix = options.prefix ?? uniquePrefix();
  const port = await freePort();
  const fullEnv = testEnv(dir, prefix, options.redisUrl ?? inject('redisUrl'), { HOST: '127.0.0.1', PORT: String(port), ...env });
  const proc = runTs('app/main.ts', fullEnv);
  await proc.waitForEvent('api_started', 30_000);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    prefix,
    env: fullEnv,
    proc,
    close: async () => {
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGTERM');
        await proc.exited;
      }
      if (!options.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
