import type { Redis } from 'ioredis';
import type { BlobStore } from '../blobs/blob-store.js';
import type { RedisKeys } from '../shared/redis-keys.js';
import { isRedisOutOfMemory, readEvictionPolicy } from '../shared/redis.js';

type ServiceState = 'online' | 'offline';

interface HealthReport {
  status: 'healthy' | 'degraded' | 'unhealthy';
  version: string;
  timestamp: string;
  services: { redis: ServiceState; storage: ServiceState; scheduler: ServiceState; diceware: ServiceState };
  uptime_seconds: number;
  started_at: string;
  warnings?: string[];
}

const CHECK_TIMEOUT_MS = 800;

function withTimeout<T>(promise: Promise<T>, fallback: T): Promise<T> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(fallback), CHECK_TIMEOUT_MS);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      () => {
        clearTimeout(timer);
        resolve(fallback);
      },
    );
  });
}

/**
 * Health as SPEC §3 defines it: Redis or storage down → unhealthy (503); only the janitor down →
 * degraded (200: uploads and downloads still work). The janitor is judged by a heartbeat key with
 * a short TTL, so a stopped worker shows offline within seconds, not "online" forever.
 */
export async function checkHealth(deps: {
  redis: Redis;
  keys: RedisKeys;
  store: Pick<BlobStore, 'check'>;
  wordlistLoaded: boolean;
  version: string;
  startedAt: Date;
  now: () => Date;
}): Promise<HealthReport> {
  // A write, not a PING: a node demoted to replica (READONLY) answers PING but refuses every upload,
  // claim and count. Out of memory (noeviction) it refuses writes too, while reads still work: degraded.
  const redisWrites = withTimeout<'ok' | 'full' | 'down'>(
    deps.redis.set(deps.keys.healthProbe(), '1', 'PX', 5_000).then(
      (r) => (r === 'OK' ? 'ok' : 'down'),
      (error: unknown) => (isRedisOutOfMemory(error) ? 'full' : 'down'),
    ),
    'down',
  );
  const redisUp = redisWrites.then((state) => state !== 'down');
  const storageUp = withTimeout(
    deps.store.check().then(() => true),
    false,
  );
  const heartbeat = withTimeout(
    deps.redis.exists(deps.keys.heartbeat()).then((n) => n === 1),
    false,
  );
  const policy = withTimeout(readEvictionPolicy(deps.redis), null);
  const [redis, storage, scheduler, evictionPolicy, writes] = await Promise.all([redisUp, storageUp, heartbeat, policy, redisWrites]);

  const warnings: string[] = [];
  if (writes === 'full') warnings.push('redis is out of memory (maxmemory, noeviction): uploads are refused until it has room');
  if (redis && evictionPolicy !== null && evictionPolicy !== 'noeviction')
    warnings.push(`redis maxmemory-policy is ${evictionPolicy}; Cinderbox needs noeviction (records and jobs could be evicted)`);

  const status = !redis || !storage || !deps.wordlistLoaded ? 'unhealthy' : !scheduler || warnings.length > 0 ? 'degraded' : 'healthy';
  const now = deps.now();
  const state = (up: boolean): ServiceState => (up ? 'online' : 'offline');
  return {
    status,
    version: deps.version,
    timestamp: now.toISOString(),
    services: { redis: state(redis), storage: state(storage), scheduler: state(redis && scheduler), diceware: state(deps.wordlistLoaded) },
    uptime_seconds: Math.floor((now.getTime() - deps.startedAt.getTime()) / 1000),
    started_at: deps.startedAt.toISOString(),
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}
