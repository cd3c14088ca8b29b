import { writeFile } from 'node:fs/promises';
import cron, { type Logger as CronLogger } from 'node-cron';
import type { Redis } from 'ioredis';
import { deleteIfHeld } from '../app/shared/held-keys.js';
import type { Logger } from '../app/shared/logger.js';
import { HEARTBEAT_TTL_SECONDS, type RedisKeys } from '../app/shared/redis-keys.js';

/**
 * The worker's sign of life (SPEC §5): a key with a short TTL, refreshed every 5 seconds by a
 * node-cron task local to this process. It is per process by design — each replica refreshes the
 * same key — so it can never double-run anything. Health reads the key: gone within
 * HEARTBEAT_TTL_SECONDS of the last worker stopping. With `healthFile`, each beat that reached Redis
 * also rewrites that file: the container's health check reads its age (scripts/healthcheck.ts), which
 * tells of this process alone where the key tells of any replica.
 */
export function startHeartbeat(deps: { redis: Redis; keys: RedisKeys; log: Logger; workerId: string; healthFile?: string }) {
  /** The value this process wrote last: the stop removes the key only while it still holds it. */
  let written: string | null = null;
  /** The beat being written, which the stop waits for: it must not land after the stop's delete. */
  let beating: Promise<void> = Promise.resolve();
  const write = async () => {
    try {
      const value = JSON.stringify({ worker: deps.workerId, at: Date.now() });
      await deps.redis.set(deps.keys.heartbeat(), value, 'EX', HEARTBEAT_TTL_SECONDS);
      written = value;
    } catch (error) {
      deps.log.warn('heartbeat_failed', { error: (error as Error).message });
      return;
    }
    if (deps.healthFile) await writeHealthFile(deps.healthFile);
  };
  let healthFileFailed = false;
  const writeHealthFile = async (file: string) => {
    try {
      await writeFile(file, `${new Date().toISOString()}\n`);
      healthFileFailed = false;
    } catch (error) {
      // Once per failing spell: the health check turns unhealthy and says why no more often.
      if (!healthFileFailed)
        deps.log.warn('health_file_failed', { file, error: (error as NodeJS.ErrnoException).code ?? (error as Error).message });
      healthFileFailed = true;
    }
  };
  const beat = () => (beating = write());
  const task = cron.schedule('*/5 * * * * *', beat, {
    name: 'heartbeat',
    noOverlap: true,
    logger: cronLogger(deps.log.child({ task: 'heartbeat' })),
  });
  return {
    /**
     * Stops beating; if this worker wrote the last beat, removes it so health sees the stop at once.
     * The check and the delete are one step: another replica's beat written between them stays.
     */
    stop: async () => {
      await task.stop();
      await task.destroy();
      await beating;
      if (written === null) return;
      await deleteIfHeld(deps.redis, deps.keys.heartbeat(), written).catch(() => undefined);
    },
    beat,
  };
}

/**
 * node-cron's own messages as our JSON lines, the text in `detail` (winston would glue a `message`
 * field onto the event name). Its default logger prints coloured text with console.warn: while
 * Redis hangs, the stuck beat makes every tick say "task still running, new execution blocked by
 * overlap prevention!", exactly when operators read the logs with jq.
 */
function cronLogger(log: Logger): CronLogger {
  const fields = (message: string | Error, error?: Error) =>
    message instanceof Error ? { detail: message.message, error: message } : { detail: message, ...(error ? { error } : {}) };
  return {
    info: (message) => log.info('cron_info', { detail: message }),
    warn: (message) => log.warn('cron_warning', { detail: message }),
    error: (message, error) => log.error('cron_error', fields(message, error)),
    debug: (message, error) => log.debug('cron_debug', fields(message, error)),
  };
}
