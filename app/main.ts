import { createServer } from 'node:http';
import { assembleAppDeps, createApp } from './app.js';
import { createLogger, logProcessWarnings } from './shared/logger.js';
import { createApiRedis, readEvictionPolicy } from './shared/redis.js';
import { ensureDirectories, loadRuntimeConfig, VERSION, waitForRedis } from './shared/runtime.js';
import { installShutdown } from './shared/shutdown.js';
import { configureServerTimeouts } from './http/timeouts.js';
import type { BlobStore } from './blobs/blob-store.js';
import { storeFromConfig } from './blobs/store-from-config.js';
import { scryptEngine, scryptEngineProblem } from './crypto/scrypt.js';

// The only file of the API that reads process.env, listens and wires signals (STYLE §2).
const config = await loadRuntimeConfig(process.env, 'api');
await ensureDirectories(config, 'api');
const log = createLogger({ service: 'api', level: config.logLevel, dir: config.logDir });
logProcessWarnings(log);

const redis = createApiRedis(config);
let redisWasDown = false;
redis.on('error', (error: Error) => {
  if (!redisWasDown) log.error('redis_unavailable', { error: error.message });
  redisWasDown = true;
});
redis.on('ready', () => {
  if (redisWasDown) log.info('redis_reconnected');
  redisWasDown = false;
});

let store: BlobStore;
try {
  await waitForRedis(redis, 15_000);
  store = await storeFromConfig(config, log);
} catch (error) {
  log.error('startup_failed', { reason: (error as Error).message });
  await log.close();
  process.exit(1);
}
const policy = await readEvictionPolicy(redis);
if (policy !== null && policy !== 'noeviction') log.warn('redis_eviction_policy', { policy, expected: 'noeviction' });

const { deps, janitor } = await assembleAppDeps({ config, log, redis, store, version: VERSION, now: () => new Date() });
const { pool } = deps;
const app = createApp(deps);

// Node checks header and request timeouts every 30 s by default: check each second, so a
// slowloris trickle is cut off near headersTimeout (20 s), not up to 50 s later.
const server = createServer({ connectionsCheckingInterval: 1_000 }, app);
// A port already taken (or not ours to bind) stops the start with one line, as a bad value does.
server.once('error', (error: NodeJS.ErrnoException) => {
  log.error('startup_failed', { reason: `listen on ${config.host}:${config.port}: ${error.code ?? error.message}` });
  void log.close().finally(() => process.exit(1));
});
if (config.metricsEnabled && config.metricsToken === undefined && config.nodeEnv === 'production')
  log.warn('metrics_unauthenticated', {
    hint: 'anyone who reaches /metrics reads it: set METRICS_TOKEN, or keep /metrics off the public proxy',
  });
server.listen(config.port, config.host, () => {
  if (scryptEngineProblem) log.warn('kdf_engine_unavailable', { error: scryptEngineProblem });
  log.info('api_started', {
    port: config.port,
    host: config.host,
    version: VERSION,
    max_file_size: config.maxFileSize,
    kdf_engine: scryptEngine,
  });
  // Pre-derived upload keys, refilled only while the KDF would otherwise idle (SPEC §10.5).
  pool?.start();
});
configureServerTimeouts(server, config);

installShutdown({
  log,
  steps: [
    { name: 'http', run: () => new Promise<void>((resolve) => server.close(() => resolve())) },
    { name: 'key-pool', run: async () => pool?.stop() },
    { name: 'queue', run: () => janitor.close() },
    { name: 'store', run: () => store.close() },
    { name: 'redis', run: () => redis.quit() },
  ],
});
