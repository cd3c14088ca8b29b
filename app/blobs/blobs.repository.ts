import type { Redis } from 'ioredis';
import { luaScripts } from '../shared/lua.js';
import type { RedisKeys } from '../shared/redis-keys.js';
import { deleteIfHeld, extendIfHeld } from '../shared/held-keys.js';

const lua = luaScripts(import.meta.url);

/** The helpers every script that protects a blob starts with; the file scripts include it too. */
export const PROTECT_LUA = lua('protect');

/** The member that stands for the blob's file record (scored with the record's expiry). */
const LIVE_MEMBER = 'live';

/** A janitor job's hold on destroying one blob: kept alive while the work runs, so a dead holder's lapses soon. */
interface DestroyLock {
  extend(): Promise<void>;
  release(): Promise<void>;
}

/** What keeps a blob's bytes from the janitor right now. */
export interface Protection {
  /** Its file record is live (not burned, deleted or expired). */
  live: boolean;
  /** Running transfers (downloads, uploads) holding a lease. */
  leases: number;
  /** When the last protection ends (ms), or null when nothing protects it: its bytes may go. */
  until: number | null;
}

type Scripted = Redis & {
  cbxLease(key: string, leaseId: string, until: number): Promise<number>;
  cbxRelease(key: string, leaseId: string, now: number): Promise<string[]>;
};

function scripted(redis: Redis): Scripted {
  if (!('cbxLease' in redis)) {
    redis.defineCommand('cbxLease', { numberOfKeys: 1, lua: `${PROTECT_LUA}\n${lua('lease')}` });
    redis.defineCommand('cbxRelease', { numberOfKeys: 1, lua: `${PROTECT_LUA}\n${lua('release')}` });
  }
  return redis as Scripted;
}

/** Protection from a script's flat answer of members and their scores. */
export function protectionOf(flat: string[]): Protection {
  let live = false;
  let leases = 0;
  let until: number | null = null;
  for (let i = 0; i + 1 < flat.length; i += 2) {
    if (flat[i] === LIVE_MEMBER) live = true;
    else leases += 1;
    until = Math.max(until ?? 0, Number(flat[i + 1]));
  }
  return { live, leases, until };
}

/**
 * Blob protection in Redis (SPEC §10.1): the blob key is a sorted set of what still needs the
 * bytes. Both processes use it: the API leases blobs while it streams them, the janitor asks before
 * it destroys anything. Members past their score count for nothing, so a lease whose holder died
 * ends by itself.
 */
export function createBlobGuard(redis: Redis, keys: RedisKeys) {
  const s = scripted(redis);
  return {
    /** Takes or renews a lease until `until` (ms). */
    async lease(blobId: string, leaseId: string, until: number): Promise<void> {
      await s.cbxLease(keys.blob(blobId), leaseId, until);
    },

    /** Ends a lease; answers what protects the blob afterwards. */
    async release(blobId: string, leaseId: string, now: number): Promise<Protection> {
      return protectionOf(await s.cbxRelease(keys.blob(blobId), leaseId, now));
    },

    async protection(blobId: string, now: number): Promise<Protection> {
      return protectionOf(await redis.zrangebyscore(keys.blob(blobId), `(${now}`, '+inf', 'WITHSCORES'));
    },

    /**
     * The right to destroy a blob's bytes now, for one job across every worker (the burn's shred and a
     * lease end's shred may run at once); null when another job holds it. It lapses by itself.
     */
    async lockDestroy(blobId: string, holder: string, ttlMs: number): Promise<DestroyLock | null> {
      const key = keys.blobLock(blobId);
      if ((await redis.set(key, holder, 'PX', ttlMs, 'NX')) !== 'OK') return null;
      return {
        extend: async () => {
          await extendIfHeld(redis, key, holder, ttlMs);
        },
        release: async () => {
          await deleteIfHeld(redis, key, holder);
        },
      };
    },
  };
}

export type BlobGuard = ReturnType<typeof createBlobGuard>;
