import { DelayedError, UnrecoverableError, type Job, type WorkerOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { destroyUnlessProtected, sweepOrphans, type BlobsDeps } from '../app/blobs/blobs.usecases.js';
import { JOBS, type JobContext, type JobHandlers, type JobName } from '../app/jobs/catalogue.js';
import type { RuntimeConfig } from '../app/config.js';
import type { Logger } from '../app/shared/logger.js';
import type { RedisKeys } from '../app/shared/redis-keys.js';
import { withSweepLock } from './sweep.js';

/**
 * Worker settings. A job whose worker dies (kill -9, OOM, power) keeps its lock for at most
 * `lockDuration`; another worker's stalled check, every `stalledInterval`, then puts it back in the
 * queue, so a crash delays a shred by seconds, not forever. `maxStalledCount` allows two such
 * crashes per job before BullMQ gives up on it. Concurrency lets an expiry's shred run while a
 * sweep of a large directory is still going; memory stays at one 1 MiB chunk per active shred.
 */
export const WORKER_OPTIONS = {
  concurrency: 4,
  lockDuration: 10_000,
  stalledInterval: 5_000,
  maxStalledCount: 2,
} as const satisfies Partial<WorkerOptions>;

/** A deferred job looks again this long after the protection it waits for ends (clock steps, late renewals). */
export const DEFER_MARGIN_MS = 250;

interface JanitorDeps {
  config: Pick<RuntimeConfig, 'orphanAgeMinutes'>;
  blobs: BlobsDeps;
  redis: Redis;
  keys: RedisKeys;
  log: Logger;
  workerId: string;
}

/** One handler per job; `JobHandlers` makes a catalogue entry without a handler a compile error. */
export function createHandlers(deps: JanitorDeps): JobHandlers {
  const { config, blobs, redis, keys, log } = deps;

  /**
   * Destroys a blob's bytes, or (while its record lives or a transfer holds a lease) runs the job
   * again when that protection ends: a running download is never cut off (SPEC §10.1).
   */
  const destroyOrWait = async (blobId: string, reason: string, context: JobContext) => {
    const outcome = await destroyUnlessProtected(blobs, blobId, reason);
    if (outcome.kind === 'destroyed') return outcome.result;
    await context.defer(outcome.until + DEFER_MARGIN_MS);
    // Logged once the job is back in the delayed set, so the line (and its metric) states a fact.
    log.debug('destroy_deferred', { reason, until: outcome.until });
    return null;
  };

  return {
    shred: async ({ blobId, reason }, context) => {
      await destroyOrWait(blobId, reason, context);
    },

    expire: async ({ blobId }, context) => {
      const result = await destroyOrWait(blobId, 'expired', context);
      if (result?.found) log.info('file_expired', { size: result.size });
    },

    sweep: async ({ trigger }, { jobId }) => {
      const counts = await withSweepLock({ redis, key: keys.sweepLock(), owner: `${deps.workerId}/${jobId}` }, () =>
        sweepOrphans({ ...blobs, orphanAgeMs: config.orphanAgeMinutes * 60_000 }),
      );
      if (counts === null) {
        // Another replica is sweeping right now; its run covers this one.
        log.info('sweep_skipped', { trigger, job_id: jobId, reason: 'running' });
        return;
      }
      log.info('orphan_swept', { trigger, job_id: jobId, ...counts });
      // Retry (with backoff) what failed rather than report a sweep that left files behind as done.
      if (counts.failed > 0) throw new Error(`${counts.failed} of ${counts.scanned} files could not be swept`);
    },
  };
}

function isJobName(name: string): name is JobName {
  return Object.hasOwn(JOBS, name);
}

/**
 * The BullMQ processor: validates the payload against the catalogue, then runs its handler. A job
 * that cannot be valid fails at once (no retry); everything the handler throws is retried. A
 * handler that defers moves its job back to the delayed set (BullMQ's DelayedError pattern).
 */
export function createProcessor(handlers: JobHandlers) {
  return async (job: Job, token?: string): Promise<void> => {
    if (!isJobName(job.name)) throw new UnrecoverableError(`unknown job name`);
    const parsed = JOBS[job.name].schema.safeParse(job.data);
    if (!parsed.success) {
      const fields = parsed.error.issues.map((issue) => issue.path.join('.') || '(payload)');
      throw new UnrecoverableError(`invalid payload: ${[...new Set(fields)].join(', ')}`);
    }
    let deferred = false;
    const context: JobContext = {
      jobId: job.id ?? '',
      attempt: job.attemptsMade + 1,
      defer: async (untilMs) => {
        await job.moveToDelayed(untilMs, token);
        deferred = true;
      },
    };
    // TypeScript cannot tie `parsed.data` to `job.name` here; the schema lookup above does.
    const handler = handlers[job.name] as (payload: unknown, context: JobContext) => Promise<void>;
    await handler(parsed.data, context);
    if (deferred) throw new DelayedError();
  };
}
