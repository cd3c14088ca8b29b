import type { Redis } from 'ioredis';
import { luaScripts } from '../shared/lua.js';
import { LOOKUP_FAILURE_WINDOW_SECONDS, type RedisKeys } from '../shared/redis-keys.js';

const lua = luaScripts(import.meta.url);

type Scripted = Redis & { cbxFail: (...args: (string | number)[]) => Promise<number> };

/** Brute-force accounting in Redis (SPEC §4.6), keyed by a client's keyed hash, never its IP. */
export function createAbuseRepository(redis: Redis, keys: RedisKeys) {
  if (!('cbxFail' in redis)) redis.defineCommand('cbxFail', { numberOfKeys: 3, lua: lua('fail') });
  const s = redis as Scripted;
  return {
    /** Milliseconds the client stays blocked, 0 when it is not. */
    async blockedFor(clientId: string): Promise<number> {
      return Math.max(0, await redis.pttl(keys.block(clientId)));
    },

    /** Counts one failed lookup; true when it started a block of `blockMs` (ending at `until`). */
    async recordFailure(clientId: string, terms: { limit: number; blockMs: number; until: number }): Promise<boolean> {
      const started = await s.cbxFail(keys.lookupFailures(clientId), keys.block(clientId), keys.blockList(), LOOKUP_FAILURE_WINDOW_SECONDS, terms.limit, terms.blockMs, terms.until, clientId);
      return started === 1;
    },
  };
}

export type AbuseRepository = ReturnType<typeof createAbuseRepository>;
