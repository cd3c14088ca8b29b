import { readFile } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import type { Config } from '../../app/config.js';
import { createJanitorQueue, type JanitorQueue } from '../../app/jobs/enqueue.js';
import { createApiRedis } from '../../app/shared/redis.js';
import { redisKeys, type RedisKeys } from '../../app/shared/redis-keys.js';
import { waitForRedis } from '../../app/shared/runtime.js';
import { LOCAL_SECRET_FILE } from '../../app/shared/secret.js';

/** What every verb works with: the service's Redis, its keys and its janitor queue. */
export interface AdminContext {
  config: Config;
  redis: Redis;
  keys: RedisKeys;
  janitor: JanitorQueue;
  now: () => number;
  close(): Promise<void>;
}

export const REDIS_WAIT_MS = 3_000;

/**
 * Connects as the API does (the same client options, so the same REDIS_URL works), failing fast:
 * rejects when Redis does not answer within REDIS_WAIT_MS.
 */
export async function connect(config: Config): Promise<AdminContext> {
  if (config.redisUrl === undefined && config.redisSentinels === undefined)
    throw new Error("REDIS_URL or REDIS_SENTINELS is required: the admin command works against the service's Redis");
  const redis = createApiRedis(config);
  // Failures reach the caller through the commands (or the wait below); nothing else prints them.
  redis.on('error', () => undefined);
  try {
    await waitForRedis(redis, REDIS_WAIT_MS);
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  const keys = redisKeys(config.redisPrefix);
  const janitor = createJanitorQueue(redis, keys.queuePrefix());
  return {
    config,
    redis,
    keys,
    janitor,
    now: Date.now,
    close: async () => {
      await janitor.close().catch(() => undefined);
      redis.disconnect();
    },
  };
}

/**
 * The server secret as the service finds it: CINDERBOX_SECRET, else (outside production) the file
 * `npm start` writes. Unlike the service, this never creates one: a new secret would hash a client
 * differently from the API, and an unblock would miss. Null when there is none.
 */
export async function readSecret(config: Config): Promise<string | null> {
  if (config.secret !== undefined) return config.secret;
  try {
    const existing = (await readFile(LOCAL_SECRET_FILE, 'utf8')).trim();
    return existing.length >= 32 ? existing : null;
  } catch {
    return null;
  }
}

/** Every key matching `pattern`, in batches, with SCAN (never KEYS: it would block Redis on a large set). */
export async function* scanKeys(redis: Redis, pattern: string): AsyncGenerator<string[]> {
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (batch.length > 0) yield batch;
  } while (cursor !== '0');
}
