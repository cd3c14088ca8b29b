import type { Redis } from 'ioredis';
import { deleteIfHeld, extendIfHeld } from '../app/shared/held-keys.js';

const SWEEP_LOCK_TTL_MS = 30_000;

/**
 * One sweep at a time across replicas (SPEC §5): the scheduler makes one job per tick, but a
 * startup sweep and a tick may still meet. The lock expires on its own if its holder dies, and is
 * extended while a long sweep runs. Returns null when another sweep holds it.
 */
export async function withSweepLock<T>(deps: { redis: Redis; key: string; owner: string }, run: () => Promise<T>): Promise<T | null> {
  const acquired = await deps.redis.set(deps.key, deps.owner, 'PX', SWEEP_LOCK_TTL_MS, 'NX');
  if (acquired !== 'OK') return null;
  const timer = setInterval(() => {
    extendIfHeld(deps.redis, deps.key, deps.owner, SWEEP_LOCK_TTL_MS).catch(() => undefined); // the next tick retries; expiry is the fallback
  }, SWEEP_LOCK_TTL_MS / 3);
  try {
    return await run();
  } finally {
    clearInterval(timer);
    await deleteIfHeld(deps.redis, deps.key, deps.owner).catch(() => undefined); // it expires anyway
  }
}
