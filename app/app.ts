import express, { type Express } from 'express';
import helmet from 'helmet';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { RuntimeConfig } from './config.js';
import type { Logger } from './shared/logger.js';
import { redisKeys, type RedisKeys } from './shared/redis-keys.js';
import { loadWordlist, type Wordlist } from './diceware/wordlist.js';
import { createJanitorQueue, type Enqueue, type JanitorQueue } from './jobs/enqueue.js';
import { requestId, requestLog } from './http/request-context.js';
import { errorHandler, notFoundHandler } from './http/error-handler.js';
import { createClientAndSiteLimiter, createRateLimiter } from './http/rate-limit.js';
import { sameOriginOnly } from './http/cors.js';
import { createHealthRouter } from './health/health.routes.js';
import { createPagesRouter } from './pages/pages.routes.js';
import { createFilesRepository } from './files/files.repository.js';
import type { FilesDeps } from './files/files.usecases.js';
import { createUploadsRouter } from './uploads/uploads.routes.js';
import { createDownloadsRouter } from './downloads/downloads.routes.js';
import { createResumeRepository } from './downloads/resume.repository.js';
import { createLookupsRouter } from './lookups/lookups.routes.js';
import type { BlobStore } from './blobs/blob-store.js';
import type { Kdf } from './kdf/kdf.js';
import type { KeyPool } from './kdf/key-pool.js';
import { kdfFromConfig } from './kdf/from-config.js';
import { createBlobGuard } from './blobs/blobs.repository.js';
import { createAbuseRepository, type AbuseRepository } from './abuse/abuse.repository.js';
import { createAbuseGuard } from './http/abuse-guard.js';
import { smallBody, smallBodyDeadlineMs, type KeyRouteGuards } from './http/key-routes.js';
import { createApiMetrics } from './metrics/api-metrics.js';
import { createMetricsRouter } from './metrics/metrics.routes.js';
import { KEY_WORDS } from './diceware/wordlist.js';

export interface AppDeps {
  config: RuntimeConfig;
  log: Logger;
  redis: Redis;
  keys: RedisKeys;
  wordlist: Wordlist;
  /** The storage engine of blobs (fs or s3). */
  store: BlobStore;
  /** The process's one KDF (fair across clients) and its pool of pre-derived upload keys (null when off). */
  kdf: Kdf;
  pool: KeyPool | null;
  enqueue: Enqueue;
  /** The janitor queue, read by /metrics for its depth. */
  queue: Queue;
  version: string;
  startedAt: Date;
  now: () => Date;
  /** The brute-force accounting; unset = in `redis` (a test may wrap it to hold a step). */
  abuse?: AbuseRepository;
}

/**
 * The app's dependencies from what the process has opened (config, logger, Redis, storage engine):
 * Redis keys, the janitor queue, the wordlist, the KDF and its key pool (not started). main.ts and
 * the tests build them here, the same way; the caller closes `janitor` and starts and stops the pool.
 */
export async function assembleAppDeps(opened: {
  config: RuntimeConfig;
  log: Logger;
  redis: Redis;
  store: BlobStore;
  version: string;
  now: () => Date;
}): Promise<{ deps: AppDeps; janitor: JanitorQueue }> {
  const { config, redis, now } = opened;
  const keys = redisKeys(config.redisPrefix);
  const janitor = createJanitorQueue(redis, keys.queuePrefix());
  const wordlist = await loadWordlist(config.wordlistPath);
  const { kdf, pool } = kdfFromConfig(config, wordlist, now);
  return {
    deps: { ...opened, keys, wordlist, kdf, pool, enqueue: janitor.enqueue, queue: janitor.queue, startedAt: now() },
    janitor,
  };
}

/** Builds the Express app from its dependencies; never listens (STYLE §2). */
export function createApp(appDeps: AppDeps): Express {
  const metrics = appDeps.config.metricsEnabled ? createApiMetrics({ ...appDeps, keyPool: appDeps.pool ?? undefined }) : null;
  // With metrics on, every log event also feeds the counters (one source of truth).
  const deps = metrics ? { ...appDeps, log: metrics.tap(appDeps.log) } : appDeps;
  const { config, redis, keys } = deps;
  const app = express();
  app.disable('x-powered-by');
  // Client IP is the socket address unless TRUST_PROXY names hops or CIDRs; never `true` (SPEC §4.6).
  app.set('trust proxy', config.trustProxy ?? false);
  app.set('query parser', 'simple');

  const log = deps.log.child({ module: 'http' });
  app.use(requestId());
  app.use(requestLog(log));
  // API answers get `default-src 'none'`; the pages router sets its own stricter-than-default page CSP.
  app.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
      },
      strictTransportSecurity: config.publicUrl?.startsWith('https://') ? { maxAge: 31536000, includeSubDomains: true } : false,
      referrerPolicy: { policy: 'no-referrer' },
      crossOriginResourcePolicy: { policy: 'same-origin' },
    }),
  );

  const limiter = (name: string, rate: RuntimeConfig['uploadRateLimit'], local = false) =>
    createRateLimiter({ name, rate, redis, prefix: keys.rateLimit(name), secret: config.secret, local, log });

  // Same-origin only, before any limiter counts the request (docs/SECURITY.md).
  app.use(sameOriginOnly({ publicUrl: config.publicUrl }));

  // Health counts per replica: it needs no Redis to refuse a flood, and answers quickly when Redis hangs.
  app.use(createHealthRouter(deps, limiter('health', config.healthRateLimit, true)));
  app.use(
    createPagesRouter({
      limits: {
        maxFileSize: config.maxFileSize,
        maxFilesPerUpload: config.maxFilesPerUpload,
        defaultExpiryMinutes: config.defaultExpiryMinutes,
        maxExpiryMinutes: config.maxExpiryMinutes,
        defaultUses: config.defaultUses,
        maxUses: config.maxUses,
        defaultWords: config.dicewareWords,
        minWords: KEY_WORDS.min,
        maxWords: KEY_WORDS.max,
      },
    }),
  );

  const files: FilesDeps = {
    config,
    kdf: deps.kdf,
    pool: deps.pool,
    files: createFilesRepository(redis, keys, config.tombstoneHours * 3_600_000),
    blobs: { store: deps.store, guard: createBlobGuard(redis, keys) },
    wordlist: deps.wordlist,
    enqueue: deps.enqueue,
    log: deps.log.child({ module: 'files' }),
    now: deps.now,
  };
  const abuse = createAbuseGuard({
    abuse: deps.abuse ?? createAbuseRepository(redis, keys),
    config,
    secret: config.secret,
    log: deps.log.child({ module: 'abuse' }),
    now: deps.now,
  });
  const throttle = [abuse.blockGuard, limiter('lookup', config.lookupRateLimit)];
  const keyRoutes: KeyRouteGuards = {
    // Blocks first, then the lookup budget, then a failure slot: all before any KDF work.
    before: [...throttle, abuse.reserveSlot],
    throttle,
    settle: abuse.settle,
    body: smallBody(smallBodyDeadlineMs(config.uploadStallSeconds)),
  };
  // Per client and per IPv6 /48: uploads create records, the one thing that fills Redis (docs/SECURITY.md).
  const uploadLimiter = createClientAndSiteLimiter({
    name: 'upload',
    rate: config.uploadRateLimit,
    redis,
    prefix: keys.rateLimit('upload'),
    aggregatePrefix: keys.rateLimit('upload-aggregate'),
    secret: config.secret,
    log,
  });
  app.use(createUploadsRouter(files, uploadLimiter));
  app.use(createDownloadsRouter({ ...files, resumes: createResumeRepository(redis, keys) }, keyRoutes));
  app.use(createLookupsRouter(files, keyRoutes));

  if (metrics) app.use(createMetricsRouter({ registry: metrics.registry, token: config.metricsToken }));
  app.use(notFoundHandler());
  app.use(errorHandler(log));
  return app;
}
