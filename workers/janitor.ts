import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { UnrecoverableError, type Job, type WorkerOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { JOBS, type JobHandlers, type JobName } from '../app/jobs/catalogue.js';
import type { RuntimeConfig } from '../app/config.js';
import type { Logger } from '../app/shared/logger.js';
import type { RedisKeys } from '../app/shared/redis-keys.js';
import { shredFile, type ShredResult } from './shred.js';
import { sweepOrphans, withSweepLock } from './sweep.js';

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

/** An expire job may fire a moment before Redis expires the record (clock skew): wait up to this. */
export const EXPIRE_GRACE_MS = 5_000;

export interface JanitorDeps {
  config: Pick<RuntimeConfig, 'storagePath' | 'tempPath' | 'shredPasses' | 'orphanAgeMinutes'>;
  redis: Redis;
  keys: RedisKeys;
  log: Logger;
  workerId: string;
  now?: () => number;
}

// Only if the end recorded in the list is not later than this job's: a renewed block stays listed.
const UNBLOCK = `
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0`;

/** One handler per job; `JobHandlers` makes a catalogue entry without a handler a compile error. */
export function createHandlers(deps: JanitorDeps): JobHandlers {
  const { config, redis, keys, log } = deps;
  const now = deps.now ?? Date.now;

  // A blob and its partial upload, if one is left: shredding both is idempotent and harmless.
  const shredBlob = async (blobId: string, reason: string): Promise<ShredResult> => {
    const blob = await shredFile(path.join(config.storagePath, blobId), { passes: config.shredPasses, kind: 'blob', log, reason });
    await shredFile(path.join(config.tempPath, `${blobId}.partial`), { passes: config.shredPasses, kind: 'partial', log, reason });
    return blob;
  };

  const isLive = async (blobId: string): Promise<boolean> => {
    const ttl = await redis.pttl(keys.blob(blobId));
    if (ttl === -2) return false; // no such key
    if (ttl === -1 || ttl > EXPIRE_GRACE_MS) return true;
    // About to expire: the job fired a moment early. Wait for Redis, then look again.
    await delay(ttl + 50);
    return (await redis.exists(keys.blob(blobId))) === 1;
  };

  return {
    shred: async ({ blobId, reason }) => {
      await shredBlob(blobId, reason);
    },

    expire: async ({ blobId }) => {
      if (await isLive(blobId)) {
        log.debug('expire_skipped', { reason: 'live' });
        return;
      }
      const blob = await shredBlob(blobId, 'expired');
      if (blob.found) log.info('file_expired', { size: blob.size });
    },

    sweep: async ({ trigger }, { jobId }) => {
      const counts = await withSweepLock({ redis, key: keys.sweepLock(), owner: `${deps.workerId}/${jobId}` }, () =>
        sweepOrphans({ ...config, redis, keys, log, now }),
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

    unblock: async ({ client, until }) => {
      const removed = (await redis.eval(UNBLOCK, 1, keys.blockList(), client, String(Math.max(now(), until)))) as number;
      if (removed === 1) log.info('ip_unblocked', { client, until });
      else log.debug('unblock_skipped', { reason: 'renewed_or_gone' });
    },
  };
}

function isJobName(name: string): name is JobName {
  return Object.hasOwn(JOBS, name);
}

/**
 * The BullMQ processor: validates the payload against the catalogue, then runs its handler. A job
 * that cannot be valid fails at once (no retry); everything the handler throws is retried.
 */
export function createProcessor(handlers: JobHandlers) {
  return async (job: Job): Promise<void> => {
    if (!isJobName(job.name)) throw new UnrecoverableError(`unknown job name`);
    const parsed = JOBS[job.name].schema.safeParse(job.data);
    if (!parsed.success) {
      const fields = parsed.error.issues.map((issue) => issue.path.join('.') || '(payload)');
      throw new UnrecoverableError(`invalid payload: ${[...new Set(fields)].join(', ')}`);
    }
    // TypeScript cannot tie `parsed.data` to `job.name` here; the schema lookup above does.
    const handler = handlers[job.name] as (payload: unknown, context: { jobId: string; attempt: number }) => Promise<void>;
    await handler(parsed.data, { jobId: job.id ?? '', attempt: job.attemptsMade + 1 });
  };
}
