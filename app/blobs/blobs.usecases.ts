import { randomUUID } from 'node:crypto';
import { errorForLog, type Logger } from '../shared/logger.js';
import type { BlobStore, DestroyResult } from './blob-store.js';
import type { BlobGuard } from './blobs.repository.js';
import { LEASE_TTL_MS } from './lease.js';

export interface BlobsDeps {
  store: BlobStore;
  guard: BlobGuard;
  log: Logger;
  now: () => number;
  /**
   * Until when a lease that lapsed may still be renewed by its holder (ms; see leaseGrace): after a
   * Redis outage the scores written before it are in the past while their downloads still stream.
   */
  graceUntil?: () => number;
}

/**
 * Until when a lapsed lease may still be renewed: one lease TTL after each reconnect of `redis`
 * (the first connection excepted). During an outage no holder can renew, and its lease's score
 * passes; when Redis is back, a holder renews within one renewal period, but a janitor that
 * reconnected first would find nothing protecting the blob and destroy the bytes of a download
 * that is still streaming (SPEC §10.1). So for one TTL after a reconnect nothing is destroyed.
 */
export function leaseGrace(
  redis: { status: string; on(event: 'ready', listener: () => void): unknown },
  now: () => number = Date.now,
): () => number {
  let connected = redis.status === 'ready';
  let until = 0;
  redis.on('ready', () => {
    if (connected) until = now() + LEASE_TTL_MS;
    connected = true;
  });
  return () => until;
}

type DestroyOutcome = { kind: 'destroyed'; result: DestroyResult } | { kind: 'protected'; until: number };

/**
 * The janitor's one rule (SPEC §10.1): a blob's bytes go only when nothing protects them, neither
 * its live record, nor a resume window, nor a running transfer's lease. Otherwise it answers until
 * when to wait. Nothing can protect the blob again once this check passes, because every lease is
 * taken in one script with a check of what already protects the blob: a new download's (claim.lua)
 * needs the live record; a resume's (resume-lease.lua) needs its record and the blob's 'resume'
 * member still in the future, which the sender's delete removes and the window's end passes; a
 * resume record is never written for a deleted file (resume-store.lua), and a download that could
 * write one still holds its lease. Blob ids are never reused.
 */
export async function destroyUnlessProtected(deps: BlobsDeps, blobId: string, reason: string): Promise<DestroyOutcome> {
  const protection = await deps.guard.protection(blobId, deps.now());
  if (protection.until !== null) return { kind: 'protected', until: protection.until };
  const grace = deps.graceUntil?.() ?? 0;
  if (deps.now() < grace) return { kind: 'protected', until: grace };
  // One job at a time per blob: another one running now does the work, and this one looks again soon.
  const lock = await deps.guard.lockDestroy(blobId, randomUUID(), DESTROY_LOCK_MS);
  if (!lock) return { kind: 'protected', until: deps.now() + DESTROY_RETRY_MS };
  const keepAlive = setInterval(() => void lock.extend().catch(() => undefined), DESTROY_LOCK_MS / 3);
  try {
    return { kind: 'destroyed', result: await deps.store.destroy(blobId, reason) };
  } finally {
    clearInterval(keepAlive);
    await lock.release().catch(() => undefined); // it lapses anyway
  }
}

/** Renewed while a shred runs, so a worker killed mid-shred leaves the blob to the next job within seconds. */
const DESTROY_LOCK_MS = 15_000;
const DESTROY_RETRY_MS = 1_000;

interface SweepCounts {
  scanned: number;
  shredded: number;
  failed: number;
  kept_live: number;
  kept_leased: number;
  kept_young: number;
}

/**
 * Destroys everything in the store that is older than `orphanAgeMs` and that nothing protects:
 * blobs whose record is gone, partial uploads no one is writing, and names that cannot be ours.
 * One failing item does not stop the rest; the counts are returned and the caller decides.
 */
export async function sweepOrphans(deps: BlobsDeps & { orphanAgeMs: number }): Promise<SweepCounts> {
  const counts: SweepCounts = { scanned: 0, shredded: 0, failed: 0, kept_live: 0, kept_leased: 0, kept_young: 0 };
  const oldestKept = deps.now() - deps.orphanAgeMs;
  for await (const entry of deps.store.list()) {
    counts.scanned += 1;
    try {
      if (entry.modifiedMs > oldestKept) {
        counts.kept_young += 1;
        continue;
      }
      const protection = entry.blobId === null ? null : await deps.guard.protection(entry.blobId, deps.now());
      if (protection?.live) counts.kept_live += 1;
      else if (protection?.until != null || deps.now() < (deps.graceUntil?.() ?? 0)) counts.kept_leased += 1;
      else if ((await deps.store.destroyEntry(entry, 'orphan')).found) counts.shredded += 1;
    } catch (error) {
      counts.failed += 1;
      deps.log.warn('sweep_item_failed', { kind: entry.kind, error: errorForLog(error) });
    }
  }
  return counts;
}
