import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Job, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { JOBS, type JobName } from '../app/jobs/catalogue.js';
import { tapLogger, type LogObserver } from '../app/metrics/log-tap.js';
import { amount, bearerMatches, oneOf } from '../app/metrics/metrics.models.js';
import { createRegistry, registerQueueDepth } from '../app/metrics/registry.js';
import type { Logger } from '../app/shared/logger.js';

// Job labels are `job_name`: Prometheus keeps `job` for the scrape job and would rename ours.
const JOB_NAMES = Object.keys(JOBS) as JobName[];
/** Why a blob is destroyed: the shred job's reasons, the expiry, and the sweep's orphans. */
const DESTROY_REASONS = ['burned', 'deleted', 'released', 'expired', 'orphan'] as const;
const SWEEP_TRIGGERS = ['schedule', 'startup', 'manual'] as const;
const SWEEP_OUTCOMES = ['shredded', 'failed', 'kept_live', 'kept_leased', 'kept_young'] as const;

/**
 * Seconds: a shred with nothing in its way takes milliseconds; one that waits for a download's
 * lease waits up to MAX_DOWNLOAD_SECONDS (an hour by default).
 */
const WAIT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200];
const JOB_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

interface WorkerMetrics {
  registry: Registry;
  observe: LogObserver;
  /** The logger, tapped: what the janitor logs also moves the counters. */
  tap(log: Logger): Logger;
  /** Job timings from the BullMQ worker's events, queue depth from the queue. */
  watch(worker: Pick<Worker, 'on'>, queue: Pick<Queue, 'getJobCounts' | 'keys'>, redis: Redis): void;
}

/**
 * When the doom of a blob was decided: a shred job is queued at the burn or delete (or at a
 * lease's end); an expire job is queued at upload, delayed to the file's expiry. Both keep their
 * timestamp when they defer, so completion minus this is burn/delete/expiry → bytes gone, lease
 * waits included. The timestamp is the enqueuing API's clock (hosts keep time with NTP).
 */
function doomedAt(job: Job): number {
  return job.name === 'expire' ? job.timestamp + (job.opts.delay ?? 0) : job.timestamp;
}

/**
 * The janitor's metrics (SPEC §10.6): shreds by reason, shred latency, sweep runs and their
 * results, job failures and durations by job name, deferred destroys (lease waits) and how long
 * they wait, queue depth. Counters come from the worker's log events, timings from job events.
 */
export function createWorkerMetrics(deps: { version: string; now?: () => number }): WorkerMetrics {
  const now = deps.now ?? Date.now;
  const registry = createRegistry('worker', deps.version);
  const registers = [registry];

  const shreds = new Counter({
    name: 'cinderbox_shreds_total',
    help: 'Blobs and partial uploads destroyed, by reason and kind.',
    labelNames: ['reason', 'kind'],
    registers,
  });
  const shreddedBytes = new Counter({
    name: 'cinderbox_shredded_bytes_total',
    help: 'Ciphertext bytes destroyed, by reason.',
    labelNames: ['reason'],
    registers,
  });
  const shredLatency = new Histogram({
    name: 'cinderbox_shred_latency_seconds',
    help: 'From burn, delete, lease end or expiry to the janitor job that left no bytes behind, lease waits included.',
    labelNames: ['reason'],
    buckets: WAIT_BUCKETS,
    registers,
  });
  const deferrals = new Counter({
    name: 'cinderbox_destroy_deferrals_total',
    help: 'Destroys put off because a download lease (or the live record) still protected the blob.',
    labelNames: ['reason'],
    registers,
  });
  const deferralWait = new Histogram({
    name: 'cinderbox_destroy_deferral_seconds',
    help: 'How long a deferred destroy waits before it looks again (the protection left).',
    labelNames: ['reason'],
    buckets: WAIT_BUCKETS,
    registers,
  });
  const sweeps = new Counter({
    name: 'cinderbox_sweeps_total',
    help: 'Sweep runs by trigger and result: done, incomplete (some files failed; retried), skipped (another sweep was running).',
    labelNames: ['trigger', 'result'],
    registers,
  });
  const sweepFiles = new Counter({
    name: 'cinderbox_sweep_files_total',
    help: 'Files the sweeps looked at, by what they did with them.',
    labelNames: ['outcome'],
    registers,
  });
  const lastSweep = new Gauge({
    name: 'cinderbox_sweep_last_success_timestamp_seconds',
    help: 'When a sweep last finished with nothing left behind (Unix time); absent until one has.',
    registers,
  });
  lastSweep.remove();
  const failures = new Counter({
    name: 'cinderbox_janitor_job_failures_total',
    help: 'Failed job attempts by job name; final="true" when no retry is left (or none can help).',
    labelNames: ['job_name', 'final'],
    registers,
  });
  const durations = new Histogram({
    name: 'cinderbox_janitor_job_duration_seconds',
    help: 'Time a completed job ran (its last attempt), by job name.',
    labelNames: ['job_name'],
    buckets: JOB_BUCKETS,
    registers,
  });

  // Every known series starts at 0, so the first event shows in rate() and a dashboard shows 0, not "no data".
  for (const reason of DESTROY_REASONS) {
    for (const kind of ['blob', 'partial']) shreds.inc({ reason, kind }, 0);
    shreddedBytes.inc({ reason }, 0);
    deferrals.inc({ reason }, 0);
    deferralWait.zero({ reason });
    if (reason !== 'orphan') shredLatency.zero({ reason });
  }
  for (const name of JOB_NAMES) durations.zero({ job_name: name });
  for (const trigger of SWEEP_TRIGGERS) for (const result of ['done', 'incomplete', 'skipped']) sweeps.inc({ trigger, result }, 0);
  for (const outcome of SWEEP_OUTCOMES) sweepFiles.inc({ outcome }, 0);
  for (const name of JOB_NAMES) for (const final of ['true', 'false']) failures.inc({ job_name: name, final }, 0);

  const observe: LogObserver = (event, fields) => {
    switch (event) {
      case 'blob_shredded': {
        const reason = oneOf(DESTROY_REASONS, fields.reason);
        shreds.inc({ reason, kind: oneOf(['blob', 'partial'] as const, fields.kind) });
        shreddedBytes.inc({ reason }, amount(fields.size) ?? 0);
        return;
      }
      case 'destroy_deferred': {
        const reason = oneOf(DESTROY_REASONS, fields.reason);
        deferrals.inc({ reason });
        const until = amount(fields.until);
        if (until !== null) deferralWait.observe({ reason }, Math.max(0, until - now()) / 1000);
        return;
      }
      case 'orphan_swept': {
        const failed = amount(fields.failed) ?? 0;
        sweeps.inc({ trigger: oneOf(SWEEP_TRIGGERS, fields.trigger), result: failed > 0 ? 'incomplete' : 'done' });
        for (const outcome of SWEEP_OUTCOMES) sweepFiles.inc({ outcome }, amount(fields[outcome]) ?? 0);
        if (failed === 0) lastSweep.set(now() / 1000);
        return;
      }
      case 'sweep_skipped':
        sweeps.inc({ trigger: oneOf(SWEEP_TRIGGERS, fields.trigger), result: 'skipped' });
        return;
      case 'job_failed':
        failures.inc({ job_name: oneOf(JOB_NAMES, fields.job), final: fields.will_retry === true ? 'false' : 'true' });
        return;
    }
  };

  const onCompleted = (job: Job) => {
    const name = oneOf(JOB_NAMES, job.name);
    const finishedAt = job.finishedOn ?? now();
    if (job.processedOn !== undefined) durations.observe({ job_name: name }, Math.max(0, finishedAt - job.processedOn) / 1000);
    if (job.name === 'shred' || job.name === 'expire') {
      const data = job.data as { reason?: unknown };
      const reason = job.name === 'expire' ? 'expired' : oneOf(DESTROY_REASONS, data.reason);
      shredLatency.observe({ reason }, Math.max(0, finishedAt - doomedAt(job)) / 1000);
    }
  };

  return {
    registry,
    observe,
    tap: (log) => tapLogger(log, observe),
    watch: (worker, queue, redis) => {
      worker.on('completed', onCompleted);
      registerQueueDepth(registry, queue, redis);
    },
  };
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The worker's only HTTP: GET /metrics on WORKER_METRICS_PORT (SPEC §10.6), bound to HOST,
 * behind METRICS_TOKEN when one is set, never cached. Everything else is 404.
 */
export async function serveMetrics(options: {
  registry: Registry;
  host: string;
  port: number;
  token: string | undefined;
  log: Logger;
}): Promise<MetricsServer> {
  const { registry, token, log } = options;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (path !== '/metrics' && path !== '/metrics/') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    if (token !== undefined && !bearerMatches(req.headers.authorization, token)) {
      res
        .writeHead(401, { 'WWW-Authenticate': 'Bearer realm="metrics"', 'Content-Type': 'text/plain; charset=utf-8' })
        .end('a bearer token is required\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (error: unknown) => {
        log.warn('metrics_failed', { error: (error as Error).message });
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('metrics failed\n');
      },
    );
  });
  // A scraper holds its connection open between scrapes: do not let it delay a shutdown.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  log.info('metrics_listening', { host: options.host, port });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
