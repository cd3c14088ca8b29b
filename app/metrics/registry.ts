import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

/**
 * One registry per process (never prom-client's global one, so tests can build as many as they
 * like). Every series carries `service` (`api` or `worker`), so one Prometheus job may scrape both.
 * The default process metrics keep their standard names (`process_resident_memory_bytes`,
 * `nodejs_eventloop_lag_seconds`, `nodejs_heap_size_used_bytes`, `nodejs_gc_duration_seconds`, …).
 */
export function createRegistry(service: 'api' | 'worker', version: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  new Gauge({ name: 'cinderbox_build_info', help: 'Always 1; the version running.', labelNames: ['version'], registers: [registry] }).set(
    { version },
    1,
  );
  return registry;
}

/** A read taken at scrape time may not hold the scrape up: past the deadline it counts as failed. */
const SCRAPE_READ_TIMEOUT_MS = 1_000;

export function within<T>(promise: Promise<T>, ms = SCRAPE_READ_TIMEOUT_MS): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (value) => (clearTimeout(timer), resolve(value)),
      (error: unknown) => (clearTimeout(timer), reject(error as Error)),
    );
  });
}

export const QUEUE_STATES = ['waiting', 'delayed', 'active', 'prioritized', 'failed', 'completed'] as const;

/**
 * Janitor queue depth by state, read from Redis at each scrape. Both processes serve it: the API's
 * copy still moves while the worker is down, which is when the backlog grows. When Redis does not
 * answer, the series are left out rather than reported as zero.
 */
export function registerQueueDepth(
  registry: Registry,
  queue: Pick<Queue, 'getJobCounts' | 'keys'>,
  redis: Pick<Redis, 'zrange'>,
  now = Date.now,
): void {
  new Gauge({
    name: 'cinderbox_janitor_jobs',
    help: 'Janitor queue jobs by state (completed and failed are the kept history).',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      this.reset();
      const counts = await within(queue.getJobCounts(...QUEUE_STATES)).catch(() => null);
      if (counts === null) return;
      for (const state of QUEUE_STATES) this.set({ state }, counts[state] ?? 0);
    },
  });
  // Expiries and the shreds after a resume window wait as delayed jobs, which only a worker that
  // takes jobs moves on: a stuck worker leaves them due without any job ever waiting.
  new Gauge({
    name: 'cinderbox_janitor_overdue_seconds',
    help: 'How long the most overdue delayed janitor job has been due (0 when none is).',
    registers: [registry],
    async collect() {
      this.reset();
      const oldest = await within(redis.zrange(queue.keys.delayed!, 0, 0, 'WITHSCORES')).catch(() => null);
      if (oldest === null) return;
      // BullMQ scores a delayed job by its due time in ms times 0x1000, plus a counter below it.
      const dueAt = oldest.length === 2 ? Math.floor(Number(oldest[1]) / 0x1000) : now();
      this.set(Math.max(0, now() - dueAt) / 1000);
    },
  });
}
