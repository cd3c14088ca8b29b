import cron from 'node-cron';
import type { Redis } from 'ioredis';
import type { Logger } from '../app/shared/logger.js';
import { HEARTBEAT_TTL_SECONDS, type RedisKeys } from '../app/shared/redis-keys.js';

/**
 * The worker's sign of life (SPEC §5): a key with a short TTL, refreshed every 5 seconds by a
 * node-cron task local to this process. It is per process by design — each replica refreshes the
 * same key — so it can never double-run anything. Health reads the key: gone within
 * HEARTBEAT_TTL_SECONDS of the last worker stopping.
 */
export function startHeartbeat(deps: { redis: Redis; keys: RedisKeys; log: Logger; workerId: string }) {
  const beat = async () => {
    try {
      await deps.redis.set(deps.keys.heartbeat(), JSON.stringify({ worker: deps.workerId, at: Date.now() }), 'EX', HEARTBEAT_TTL_SECONDS);
    } catch (error) {
      deps.log.warn('heartbeat_failed', { error: (error as Error).message });
    }
  };
  const task = cron.schedule('*/5 * * * * *', beat, { name: 'heartbeat', noOverlap: true });
  return {
    /** Stops beating; if this worker wrote the last beat, removes it so health sees the stop at once. */
    stop: async () => {
      await task.stop();
      await task.destroy();
      const key = deps.keys.heartbeat();
      const last = await deps.redis.get(key).catch(() => null);
      if (last !== null && (JSON.parse(last) as { worker?: string }).worker === deps.workerId) await deps.redis.del(key).catch(() => undefined);
    },
    beat,
  };
}
