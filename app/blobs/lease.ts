import { randomBytes } from 'node:crypto';
import type { Logger } from '../shared/logger.js';
import type { BlobGuard, Protection } from './blobs.repository.js';

/** A lease lasts this long past its last renewal: a holder that dies leaves at most this behind. */
export const LEASE_TTL_MS = 15_000;
/** Renewed this often while the transfer runs (a third of the TTL: two renewals may fail in a row). */
const LEASE_RENEW_MS = 5_000;

export function newLeaseId(): string {
  return randomBytes(12).toString('base64url');
}

/** The end of a lease renewed at `now`: one TTL ahead, never past `startedAt + maxMs` (MAX_DOWNLOAD_SECONDS). */
export function leaseUntil(terms: { startedAt: number; now: number; maxMs: number; ttlMs?: number }): number {
  return Math.min(terms.now + (terms.ttlMs ?? LEASE_TTL_MS), terms.startedAt + terms.maxMs);
}

export interface HeldLease {
  readonly id: string;
  /** Ends the lease (once; later calls return the same answer): what still protects the blob. */
  release(): Promise<Protection>;
  /**
   * Stops renewing a lease that another script ends: an upload's store (its record takes over) or a
   * download's finish (its receipt note and the lease's end in one step).
   */
  stopRenewing(): void;
}

interface LeaseTerms {
  guard: BlobGuard;
  blobId: string;
  id: string;
  startedAt: number;
  maxMs: number;
  now: () => number;
  log: Logger;
  ttlMs?: number;
  renewMs?: number;
}

/**
 * Keeps a lease that is already held (taken by the claim script, or by `takeLease`) alive while a
 * transfer runs. A failed renewal is logged and retried at the next tick. An outage long enough to
 * lose the lease also stops the janitor, and once Redis is back the janitor waits one TTL before it
 * destroys anything (leaseGrace in blobs.usecases.ts), so the holder can renew first.
 */
export function keepLease(terms: LeaseTerms): HeldLease {
  const { guard, blobId, id, now, log } = terms;
  const timer = setInterval(() => {
    guard
      .lease(blobId, id, leaseUntil({ ...terms, now: now() }))
      .catch((error: unknown) => log.warn('lease_renew_failed', { error: (error as Error).message }));
  }, terms.renewMs ?? LEASE_RENEW_MS);
  timer.unref();
  let released: Promise<Protection> | null = null;
  return {
    id,
    release: () => {
      clearInterval(timer);
      released ??= guard.release(blobId, id, now());
      return released;
    },
    stopRenewing: () => clearInterval(timer),
  };
}

/** Takes a new lease on a blob, then keeps it. */
export async function takeLease(terms: Omit<LeaseTerms, 'id' | 'startedAt'>): Promise<HeldLease> {
  const startedAt = terms.now();
  const id = newLeaseId();
  await terms.guard.lease(terms.blobId, id, leaseUntil({ ...terms, startedAt, now: startedAt }));
  return keepLease({ ...terms, id, startedAt });
}
