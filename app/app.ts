import express, { type Express } from 'express';
import helmet from 'helmet';
import type { Redis } from 'ioredis';
import type { RuntimeConfig } from './config.js';
import type { Logger } from './shared/logger.js';
import type { RedisKeys } from './shared/redis-keys.js';
import type { Wordlist } from './diceware/wordlist.js';
import type { Enqueue } from './jobs/enqueue.js';
import { requestId, requestLog } from './http/request-context.js';
import { errorHandler, notFoundHandler } from './http/error-handler.js';
import { createRateLimiter } from './http/rate-limit.js';
import { createHealthRouter } from './health/health.routes.js';

export interface AppDeps {
  config: RuntimeConfig;
  log: Logger;
  redis: Redis;
  keys: RedisKeys;
  wordlist: Wordlist;
  enqueue: Enqueue;
  version: string;
  startedAt: Date;
  now: () => Date;
}

/** Builds the Express app from its dependencies; never listens (STYLE §2). */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  // Client IP is the socket address unless TRUST_PROXY names hops or CIDRs; never `true` (SPEC §4.6).
  app.set('trust proxy', deps.config.trustProxy ?? false);
  app.set('query parser', 'simple');

  const log = deps.log.child({ module: 'http' });
  app.use(requestId());
  app.use(requestLog(log));
  app.use(
    helmet({
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] } },
      strictTransportSecurity: deps.config.publicUrl?.startsWith('https://') ? { maxAge: 31536000, includeSubDomains: true } : false,
      referrerPolicy: { policy: 'no-referrer' },
      crossOriginResourcePolicy: { policy: 'same-origin' },
    }),
  );

  const healthLimiter = createRateLimiter({
    name: 'health',
    rate: deps.config.healthRateLimit,
    redis: deps.redis,
    prefix: deps.keys.rateLimit('health'),
    failOpen: true,
  });
  app.use(createHealthRouter(deps, healthLimiter));

  app.use(notFoundHandler());
  app.use(errorHandler(log));
  return app;
}
