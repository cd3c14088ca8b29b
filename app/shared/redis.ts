import { Redis, type RedisOptions } from 'ioredis';

/**
 * Redis clients by role (SPEC §5). The API's client fails fast: no offline queue and a command
 * timeout, so an outage answers 503 within about a second instead of hanging a request. The
 * worker's client waits and reconnects forever, as BullMQ requires (`maxRetriesPerRequest: null`).
 */
export const API_COMMAND_TIMEOUT_MS = 1_000;

export function createApiRedis(url: string, overrides: RedisOptions = {}): Redis {
  return new Redis(url, {
    enableOfflineQueue: false,
    commandTimeout: API_COMMAND_TIMEOUT_MS,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 1,
    // Reconnect quickly after an outage, so the service recovers without a restart.
    retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    lazyConnect: false,
    ...overrides,
  });
}

export function createWorkerRedis(url: string, overrides: RedisOptions = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    ...overrides,
  });
}

const UNAVAILABLE_MESSAGES = [
  "Stream isn't writeable",
  'Command timed out',
  'Connection is closed',
  'Reached the max retries per request limit',
  'connect ECONNREFUSED',
  'connect ENOENT',
  'read ECONNRESET',
  'LOADING',
  'MISCONF',
];

/** True for errors that mean "Redis cannot answer now", as opposed to a bug in a command. */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === 'MaxRetriesPerRequestError') return true;
  return UNAVAILABLE_MESSAGES.some((m) => error.message.includes(m));
}

/** True when Redis refused a write because it is out of memory (maxmemory with noeviction). */
export function isRedisOutOfMemory(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('OOM');
}

/** Reads `maxmemory-policy`; null when CONFIG is not allowed (managed Redis). */
export async function readEvictionPolicy(redis: Redis): Promise<string | null> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as unknown;
    if (Array.isArray(reply) && typeof reply[1] === 'string') return reply[1];
    return null;
  } catch {
    return null;
  }
}
