import type { Queue } from 'bullmq';
import { jobIds, SWEEP_SCHEDULER_ID, type JobPayload } from '../app/jobs/catalogue.js';
import type { Logger } from '../app/shared/logger.js';

/** Replicas starting within this window share one startup sweep. */
const STARTUP_SWEEP_DEDUP_MS = 30_000;

/**
 * The janitor's periodic work, as data (STYLE §9). A BullMQ job scheduler creates one job per tick
 * with an id derived from the tick time (`repeat:sweep-schedule:<ms>`), so however many replicas
 * upsert it, each tick runs once. node-cron is kept for the per-process heartbeat only.
 */
export async function installSchedule(deps: { queue: Queue; cleanupIntervalMinutes: number; log: Logger }): Promise<void> {
  const every = Math.max(1_000, Math.round(deps.cleanupIntervalMinutes * 60_000));
  const scheduled: JobPayload<'sweep'> = { trigger: 'schedule' };
  await deps.queue.upsertJobScheduler(SWEEP_SCHEDULER_ID, { every }, { name: 'sweep', data: scheduled, opts: { attempts: 3 } });

  // A sweep at start catches what piled up while no worker ran. The deduplication id is fixed and
  // holds for a while after the job ends, so replicas starting together run it once, and a later
  // restart runs it again.
  const startup: JobPayload<'sweep'> = { trigger: 'startup' };
  await deps.queue.add('sweep', startup, { deduplication: { id: jobIds.sweep(startup), ttl: STARTUP_SWEEP_DEDUP_MS } });
  deps.log.info('schedule_installed', { sweep_every_ms: every });
}
