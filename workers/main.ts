import { randomUUID } from 'node:crypto';
import { Worker } from 'bullmq';
import { JANITOR_QUEUE } from '../app/jobs/catalogue.js';
import { createJanitorQueue } from '../app/jobs/enqueue.js';
import { createLogger, errorForLog, logProcessWarnings } from '../app/shared/logger.js';
import type { BlobStore } from '../app/blobs/blob-store.js';
import { storeFromConfig } from '../app/blobs/store-from-config.js';
import { createBlobGuard } from '../app/blobs/blobs.repository.js';
import { leaseGrace } from '../app/blobs/blobs.usecases.js';
import { createWorkerRedis, readEvictionPolicy } from '../app/shared/redis.js';
import { redisKeys } from '../app/shared/redis-keys.js';
import { ensureDirectories, loadRuntimeConfig, VERSION } from '../app/shared/runtime.js';
import { installShutdown } from '../app/shared/shutdown.js';
import { startHeartbeat } from './heartbeat.js';
import { createHandlers, createProcessor, WORKER_OPTIONS } from './janitor.js';
import { installSchedule } from './schedule.js';
import { watchRedisPersistence } from './redis-persistence.js';
import { createWorkerMetrics, serveMetrics, type MetricsServer } from './metrics.js';

// The janitor process: reads process.env once, connects, runs jobs; its only HTTP is the optional metrics port.
const config = await loadRuntimeConfig(process.env, 'worker');
await ensureDirectories(config, 'worker');
// With WORKER_METRICS_PORT set, what the janitor logs also moves its counters (workers/metrics.ts).
const metrics = config.workerMetricsPort === undefined ? null : createWorkerMetrics({ version: VERSION });
const baseLog = createLogger({ service: 'worker', level: config.logLevel, dir: config.logDir });
const log = metrics ? metrics.tap(baseLog) : baseLog;
logProcessWarnings(log);
// Bound before anything else starts: a port that cannot be had stops the start, it is not ignored.
let metricsServer: MetricsServer | null = null;
if (metrics) {
  try {
    metricsServer = await serveMetrics({
      registry: metrics.registry,
      host: config.host,
      port: config.workerMetricsPort!,
      token: config.metricsToken,
      log,
    });
  } catch (error) {
    log.error('startup_failed', { reason: `metrics port: ${(error as Error).message}` });
    await log.close();
    process.exit(1);
  }
}
const keys = redisKeys(config.redisPrefix);
const workerId = randomUUID();

// The worker's client waits and reconnects: a Redis outage pauses the janitor, it does not kill it.
const redis = createWorkerRedis(config);
redis.on('error', (error: Error) => log.warn('redis_unavailable', { error: error.message }));
redis.once('ready', () => {
  void readEvictionPolicy(redis).then((policy) => {
    if (policy !== null && policy !== 'noeviction') log.warn('redis_eviction_policy', { policy, expected: 'noeviction' });
  });
});
// Wrapped keys must not reach a disk: warn about every node that would write them (at start, after a failover).
watchRedisPersistence({ redis, target: config, log });

const heartbeat = startHeartbeat({ redis, keys, log, workerId, healthFile: config.workerHealthFile });
await heartbeat.beat();

const janitor = createJanitorQueue(redis, keys.queuePrefix());
let store: BlobStore;
try {
  store = await storeFromConfig(config, log);
} catch (error) {
  // A bucket the worker cannot use: stop with one clear line (the orchestrator restarts it).
  log.error('startup_failed', { reason: errorForLog(error) });
  await log.close();
  process.exit(1);
}
const blobs = { store, guard: createBlobGuard(redis, keys), log, now: Date.now, graceUntil: leaseGrace(redis) };
const handlers = createHandlers({ config, blobs, redis, keys, log, workerId });
const worker = new Worker(JANITOR_QUEUE, createProcessor(handlers), { connection: redis, prefix: keys.queuePrefix(), ...WORKER_OPTIONS });

// Job ids carry blob ids: the log names the job kind only, and file errors lose their path.
worker.on('failed', (job, error) => {
  const attempts = job?.opts.attempts ?? 1;
  const attempt = job?.attemptsMade ?? 0;
  const willRetry = error.name !== 'UnrecoverableError' && attempt < attempts;
  const fields = { job: job?.name ?? 'unknown', attempt, attempts, will_retry: willRetry, reason: errorForLog(error) };
  if (willRetry) log.warn('job_failed', fields);
  else log.error('job_failed', fields);
});
worker.on('error', (error) => log.warn('worker_error', { error: errorForLog(error) }));
metrics?.watch(worker, janitor.queue, redis);

/** How long a shutdown waits for the worker's blocking connection before it closes the worker (closeWorker). */
const WORKER_READY_WAIT_MS = 5_000;

// Signals are handled before anything is announced, so a SIGTERM at any point drains in order.
installShutdown({
  log,
  steps: [
    // close() stops fetching and waits for the active jobs to finish, so a shred is never cut short.
    { name: 'worker', run: () => closeWorker(worker) },
    { name: 'heartbeat', run: () => heartbeat.stop() },
    { name: 'metrics', run: async () => metricsServer?.close() },
    { name: 'queue', run: () => janitor.close() },
    { name: 'store', run: () => store.close() },
    { name: 'redis', run: () => redis.quit() },
  ],
});

await installSchedule({ queue: janitor.queue, cleanupIntervalMinutes: config.cleanupIntervalMinutes, log });
// Redis keeps no data across a restart (SPEC §4.5), so the job scheduler may be gone after a
// reconnect: install it again (idempotent), which also sweeps the blobs that lost their records.
redis.on('ready', () => {
  installSchedule({ queue: janitor.queue, cleanupIntervalMinutes: config.cleanupIntervalMinutes, log }).catch((error: unknown) =>
    log.warn('schedule_install_failed', { error: errorForLog(error) }),
  );
});
/**
 * BullMQ 5.81 crashes the process when a Worker is closed while its blocking connection is still
 * connecting: close() removes that connection's listeners, then the connect it cut short fails and
 * is emitted as an 'error' nobody hears (seen as exit 1 on a SIGTERM right after the start). So the
 * close waits for that connection first, within a bound; a worker whose connection is not ready by
 * then (Redis down or unreachable) is left alone: it never fetched a job, so none can be running,
 * and the process exits at the end of the shutdown anyway.
 */
async function closeWorker(running: Worker): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), WORKER_READY_WAIT_MS)));
  const ready = await Promise.race([
    running.waitUntilReady().then(
      () => true,
      () => false,
    ),
    bound,
  ]);
  clearTimeout(timer);
  if (ready) await running.close();
}

log.info('worker_started', { version: VERSION, worker_id: workerId, concurrency: WORKER_OPTIONS.concurrency });
