import { z } from 'zod';
import type { JobsOptions } from 'bullmq';
import { BLOB_ID_PATTERN } from '../blobs/blob-id.js';

/**
 * The janitor's job catalogue (STYLE §7): job name → payload schema and options. The API imports it
 * to enqueue, the worker to handle; `JobHandlers` makes a job without a handler a compile error.
 * Job data holds no secret: blob ids (random names on disk) and opaque client ids only.
 */
export const JANITOR_QUEUE = 'janitor';

const blobId = z.string().regex(BLOB_ID_PATTERN, 'expected a blob id');
const leaseId = z.string().regex(/^[A-Za-z0-9_-]{16}$/, 'expected a lease id');

export const JOBS = {
  /**
   * Burned or deleted (or the last transfer holding it ended, `released`): destroy the blob's bytes
   * once nothing protects them; while a download's lease holds them, wait for it.
   */
  shred: {
    schema: z.object({
      blobId,
      reason: z.enum(['burned', 'deleted', 'released']),
      /** The transfer whose lease's end queued this job. */
      lease: leaseId.optional(),
      /** The claim (its lease id) that burned the file, for the shred a burn queues. */
      burn: leaseId.optional(),
    }),
  },
  /** Delayed until the file's expiry: destroy its blob once nothing protects it. */
  expire: { schema: z.object({ blobId }) },
  /** Periodic and at start (and on demand): destroy what nothing protects, older than ORPHAN_AGE_MINUTES. */
  sweep: { schema: z.object({ trigger: z.enum(['schedule', 'startup', 'manual']), requestedAt: z.number().int().positive().optional() }) },
} as const;

export type JobName = keyof typeof JOBS;
export type JobPayload<N extends JobName> = z.infer<(typeof JOBS)[N]['schema']>;
export interface JobContext {
  jobId: string;
  attempt: number;
  /** Runs this job again at `untilMs` instead of now (not a failure, no attempt spent); the handler returns its result. */
  defer(untilMs: number): Promise<void>;
}
export type JobHandlers = { [N in JobName]: (payload: JobPayload<N>, context: JobContext) => Promise<void> };

/** Deterministic ids (no `:`, which BullMQ reserves), so enqueuing twice is a no-op. */
export const jobIds = {
  // One id per cause: a burn's shred waits for its resume window, and must not swallow a later
  // delete's (a burn whose first chunk failed gives its use back, and the sender may then delete).
  // Each burn is a cause of its own: after such a refund the first burn's job has put itself back
  // until the file's expiry, and the next burn's must still run when its own window ends.
  shred: (p: JobPayload<'shred'>) => (p.burn ? `shred-${p.blobId}-burned-${p.burn}` : `shred-${p.blobId}-${p.lease ?? p.reason}`),
  expire: (p: JobPayload<'expire'>) => `expire-${p.blobId}`,
  // Each manual sweep is its own job (a second one within the history's life must not be dropped).
  sweep: (p: JobPayload<'sweep'>) => (p.requestedAt ? `sweep-${p.trigger}-${p.requestedAt}` : `sweep-${p.trigger}`),
} satisfies { [N in JobName]: (payload: JobPayload<N>) => string };

export const SWEEP_SCHEDULER_ID = 'sweep-schedule';

/** Retries with backoff for transient errors; bounded history so Redis does not grow. */
export const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 1_000 },
  removeOnComplete: { count: 1_000, age: 24 * 3600 },
  removeOnFail: { count: 5_000, age: 7 * 24 * 3600 },
};
