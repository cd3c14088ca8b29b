import { lstat, opendir } from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { JOBS } from '../app/jobs/catalogue.js';
import type { Logger } from '../app/shared/logger.js';
import type { RedisKeys } from '../app/shared/redis-keys.js';
import { errorCode, shredFile, type ShredKind } from './shred.js';

export interface SweepCounts {
  scanned: number;
  shredded: number;
  failed: number;
  kept_live: number;
  kept_young: number;
}

export interface SweepDeps {
  storagePath: string;
  tempPath: string;
  orphanAgeMinutes: number;
  shredPasses: number;
  redis: Redis;
  keys: RedisKeys;
  log: Logger;
  now: () => number;
}

const blobIdSchema = JOBS.expire.schema.shape.blobId;

/**
 * Shreds every regular file in STORAGE_PATH and TEMP_PATH that is older than ORPHAN_AGE_MINUTES and
 * is not a live blob. Both directories belong to Cinderbox alone, so unknown names are swept too. A
 * partial (`<blobId>.partial`) is never live: only its age protects an upload in progress. One
 * failing item does not stop the rest; the counts are returned and the caller decides.
 */
export async function sweepOrphans(deps: SweepDeps): Promise<SweepCounts> {
  const counts: SweepCounts = { scanned: 0, shredded: 0, failed: 0, kept_live: 0, kept_young: 0 };
  const oldestKept = deps.now() - deps.orphanAgeMinutes * 60_000;
  const places: { dir: string; kind: ShredKind }[] = [
    { dir: deps.storagePath, kind: 'blob' },
    { dir: deps.tempPath, kind: 'partial' },
  ];
  for (const { dir, kind } of places) {
    let entries;
    try {
      // opendir streams the directory: memory does not grow with the number of files.
      entries = await opendir(dir);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      throw error;
    }
    for await (const entry of entries) {
      if (!entry.isFile()) continue;
      counts.scanned++;
      const filePath = path.join(dir, entry.name);
      try {
        const stat = await lstat(filePath);
        if (stat.mtimeMs > oldestKept) {
          counts.kept_young++;
        } else if (kind === 'blob' && (await isLiveBlob(deps, entry.name))) {
          counts.kept_live++;
        } else {
          const result = await shredFile(filePath, { passes: deps.shredPasses, kind, log: deps.log, reason: 'orphan' });
          if (result.found) counts.shredded++;
        }
      } catch (error) {
        if (errorCode(error) === 'ENOENT') continue; // gone meanwhile (shredded by a job): nothing left to do
        counts.failed++;
        deps.log.warn('sweep_item_failed', { kind, error: describeError(error) });
      }
    }
  }
  return counts;
}

async function isLiveBlob(deps: SweepDeps, name: string): Promise<boolean> {
  // A name that cannot be a blob id can have no record.
  if (!blobIdSchema.safeParse(name).success) return false;
  return (await deps.redis.exists(deps.keys.blob(name))) === 1;
}

/**
 * Error text safe for logs: file-system errors carry a path (a blob id), so they are reduced to
 * their code and system call; other errors (Redis, BullMQ, ours) keep their message, ids masked.
 */
export function describeError(error: unknown): string {
  const code = errorCode(error);
  if (code !== undefined && code.startsWith('E')) {
    const syscall = (error as { syscall?: unknown }).syscall;
    return typeof syscall === 'string' ? `${code} (${syscall})` : code;
  }
  // BullMQ errors may quote a job id (`shred-<blobId>`): long id-like tokens are masked.
  return (error instanceof Error ? error.message : String(error)).replace(/[A-Za-z0-9_-]{32,}/g, '[id]');
}

// Compare-and-delete / compare-and-extend, so a replica never releases or extends another's lock.
const RELEASE_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
const EXTEND_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;

export const SWEEP_LOCK_TTL_MS = 30_000;

/**
 * One sweep at a time across replicas (SPEC §5): the scheduler makes one job per tick, but a
 * startup sweep and a tick may still meet. The lock expires on its own if its holder dies, and is
 * extended while a long sweep runs. Returns null when another sweep holds it.
 */
export async function withSweepLock<T>(deps: { redis: Redis; key: string; owner: string }, run: () => Promise<T>): Promise<T | null> {
  const acquired = await deps.redis.set(deps.key, deps.owner, 'PX', SWEEP_LOCK_TTL_MS, 'NX');
  if (acquired !== 'OK') return null;
  const timer = setInterval(() => {
    deps.redis.eval(EXTEND_LOCK, 1, deps.key, deps.owner, String(SWEEP_LOCK_TTL_MS)).catch(() => undefined); // the next tick retries; expiry is the fallback
  }, SWEEP_LOCK_TTL_MS / 3);
  try {
    return await run();
  } finally {
    clearInterval(timer);
    await deps.redis.eval(RELEASE_LOCK, 1, deps.key, deps.owner).catch(() => undefined); // it expires anyway
  }
}
