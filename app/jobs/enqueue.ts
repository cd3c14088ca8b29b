import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { DEFAULT_JOB_OPTIONS, JANITOR_QUEUE, JOBS, jobIds, type JobName, type JobPayload } from './catalogue.js';

export interface Enqueue {
  <N extends JobName>(name: N, payload: JobPayload<N>, options?: { delayMs?: number }): Promise<void>;
}

export interface JanitorQueue {
  enqueue: Enqueue;
  queue: Queue;
  close(): Promise<void>;
}

/** The API's side of the catalogue: validated payloads, deterministic ids, shared options. */
export function createJanitorQueue(connection: Redis, prefix: string): JanitorQueue {
  const queue = new Queue(JANITOR_QUEUE, { connection, prefix, defaultJobOptions: DEFAULT_JOB_OPTIONS });
  // A Queue emits 'error' on connection trouble; the request that needed it gets its own error.
  queue.on('error', () => undefined);
  const enqueue: Enqueue = async (name, payload, options = {}) => {
    const data = JOBS[name].schema.parse(payload) as JobPayload<typeof name>;
    const jobId = (jobIds[name] as (p: typeof data) => string)(data);
    await queue.add(name, data, { jobId, ...(options.delayMs !== undefined ? { delay: Math.max(0, options.delayMs) } : {}) });
  };
  return { enqueue, queue, close: () => queue.close() };
}
