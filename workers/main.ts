import { randomUUID } from 'node:crypto';
import { createLogger } from '../app/shared/logger.js';
import { createWorkerRedis, readEvictionPolicy } from '../app/shared/redis.js';
import { redisKeys } from '../app/shared/redis-keys.js';
import { ensureDirectories, loadRuntimeConfig, VERSION } from '../app/shared/runtime.js';
import { installShutdown } from '../app/shared/shutdown.js';
import { startHeartbeat } from './heartbeat.js';

// The janitor process: reads process.env once, connects, runs jobs, never serves HTTP.
const config = await loadRuntimeConfig(process.env, 'worker');
await ensureDirectories(config);
const log = createLogger({ service: 'worker', level: config.logLevel, dir: config.logDir });
const keys = redisKeys(config.redisPrefix);
const workerId = randomUUID();

// The worker's client waits and reconnects: a Redis outage pauses the janitor, it does not kill it.
const redis = createWorkerRedis(config.redisUrl!);
redis.on('error', (error: Error) => log.warn('redis_unavailable', { error: error.message }));
redis.once('ready', () => {
  void readEvictionPolicy(redis).then((policy) => {
    if (policy !== null && policy !== 'noeviction') log.warn('redis_eviction_policy', { policy, expected: 'noeviction' });
  });
});

const heartbeat = startHeartbeat({ redis, keys, log, workerId });
await heartbeat.beat();
log.info('worker_started', { version: VERSION, worker_id: workerId });

installShutdown({
  log,
  steps: [
    { name: 'heartbeat', run: () => heartbeat.stop() },
    { name: 'redis', run: () => redis.quit() },
  ],
});
