import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, inject } from 'vitest';
import { jobIds, type JobName, type JobPayload } from '../../app/jobs/catalogue.js';
import { createJanitorQueue, type JanitorQueue } from '../../app/jobs/enqueue.js';
import { redisKeys, type RedisKeys } from '../../app/shared/redis-keys.js';
import { testEnv, uniquePrefix } from './app.js';
import { clearIfExternal, storageFor, type StorageView } from './engine.js';
import { isAlive, runTs, type RunningProcess } from './processes.js';

// The janitor worker as a real process, for tests/integration/janitor*.test.ts.

export type Line = Record<string, unknown> & { event: string };

/** One test's world: its own prefix, queue, storage (on the project's engine) and worker processes. */
export interface Janitor {
  dir: string;
  env: Record<string, string>;
  keys: RedisKeys;
  redis: Redis;
  queue: JanitorQueue;
  events: QueueEvents;
  /** The blobs the worker sees, through the project's engine. */
  storage: StorageView;
  startWorker(env?: Record<string, string>): RunningProcess;
  enqueue<N extends JobName>(name: N, payload: JobPayload<N>, options?: { delayMs?: number }): Promise<string>;
  /** Resolves when the job completes; rejects with its reason when it fails for good. */
  finished(jobId: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const workers: RunningProcess[] = [];

/** Kills (-9) every worker a test left running. Call once at the top level of a test file. */
export function killWorkersAfterEach(): void {
  afterEach(async () => {
    for (const worker of workers.splice(0)) {
      if (worker.child.exitCode === null && worker.child.signalCode === null && isAlive(worker.child.pid!)) {
        worker.child.kill('SIGKILL');
        await worker.exited;
      }
    }
  });
}

export async function createJanitor(): Promise<Janitor> {
  const redisUrl = inject('redisUrl');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-janitor-'));
  const prefix = uniquePrefix();
  const keys = redisKeys(prefix);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = createJanitorQueue(redis, keys.queuePrefix());
  const events = new QueueEvents(queue.queue.name, {
    connection: new Redis(redisUrl, { maxRetriesPerRequest: null }),
    prefix: keys.queuePrefix(),
  });
  await events.waitUntilReady();
  const env = testEnv(dir, prefix, redisUrl, { LOG_LEVEL: 'debug' });
  await mkdir(env.STORAGE_PATH!, { recursive: true });
  await mkdir(env.TEMP_PATH!, { recursive: true });
  const storage = await storageFor(env);
  return {
    dir,
    env,
    keys,
    redis,
    queue,
    events,
    storage,
    startWorker: (extra = {}) => {
      const worker = runTs('workers/main.ts', { ...env, ...extra });
      workers.push(worker);
      return worker;
    },
    enqueue: async (name, payload, options) => {
      await queue.enqueue(name, payload, options);
      return (jobIds[name] as (p: typeof payload) => string)(payload);
    },
    finished: async (jobId, timeoutMs = 20_000) => {
      const job = await queue.queue.getJob(jobId);
      if (!job) throw new Error(`no job ${jobId}`);
      await job.waitUntilFinished(events, timeoutMs);
    },
    close: async () => {
      const connection = await events.client;
      await events.close();
      connection.disconnect();
      await queue.close();
      redis.disconnect();
      await clearIfExternal(storage);
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function newBlobId(): string {
  return randomBytes(24).toString('base64url'); // 32 chars, as the API makes them
}

export function logLines(...procs: RunningProcess[]): Line[] {
  return procs.flatMap((p) =>
    p
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Line];
        } catch {
          return []; // the last line may still be arriving
        }
      }),
  );
}

export function linesOf(event: string, ...procs: RunningProcess[]): Line[] {
  return logLines(...procs).filter((l) => l.event === event);
}

/** Waits until the processes' combined output satisfies `done`, checking on each chunk they write. */
export function waitForLogs(procs: RunningProcess[], done: (lines: Line[]) => boolean, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!done(logLines(...procs))) return;
      cleanup();
      resolve();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new Error(`log condition not met within ${timeoutMs} ms; stdout: ${procs.map((p) => p.stdout().slice(-3000)).join('\n---\n')}`),
      );
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      for (const p of procs) p.child.stdout!.off('data', check);
    };
    for (const p of procs) p.child.stdout!.on('data', check);
    check();
  });
}

/** The startup sweep and the scheduler's first tick, done (or one skipped for the other). */
export function initialSweepsDone(worker: RunningProcess): Promise<void> {
  return waitForLogs([worker], (lines) => lines.filter((l) => l.event === 'orphan_swept' || l.event === 'sweep_skipped').length >= 2);
}
