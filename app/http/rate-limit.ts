import { createHash } from 'node:crypto';
import { MemoryStore, rateLimit, type RateLimitRequestHandler } from 'express-rate-limit';
import { clientIdOf } from '../abuse/abuse.models.js';
import { AGGREGATE_MULTIPLE } from '../abuse/client.models.js';
import { requester } from './client.js';
import type { Request, RequestHandler } from 'express';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import { isRedisOutOfMemory } from '../shared/redis.js';
import type { Rate } from './rate.models.js';
import { rateLimited } from './errors.js';

/**
 * express-rate-limit reports through a `{ warn, error }` logger (console by default). Route it to
 * the structured log: store errors (Redis down) become one `rate_limit_store_error` line; any
 * `ERR_ERL_*` validation error is logged as `rate_limit_misconfigured` at error level (tests fail on it).
 */
function limiterLogger(log: Logger | undefined, name: string) {
  const emit = (level: 'warn' | 'error', args: unknown[]) => {
    const error = args.find((a): a is Error => a instanceof Error);
    const code = (error as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string' && code.startsWith('ERR_ERL_')) {
      if (log) log.error('rate_limit_misconfigured', { limiter: name, code, detail: error?.message });
      else console.error(error);
      return;
    }
    const text = args.find((a): a is string => typeof a === 'string');
    log?.[level]('rate_limit_store_error', { limiter: name, detail: text, error: error?.message });
  };
  return { warn: (...args: unknown[]) => emit('warn', args), error: (...args: unknown[]) => emit('error', args) };
}

/**
 * A limiter whose counts live in Redis, so every API replica shares them, and which fails closed
 * (503) when Redis cannot be reached. `local` keeps the counts in this process instead: for /health,
 * which must answer (503 "unhealthy") within about a second exactly when Redis hangs.
 */
export function createRateLimiter(options: {
  name: string;
  rate: Rate;
  redis: Redis;
  prefix: string;
  /** Keys are keyed hashes of the client, so no IP ever sits in Redis (SPEC §10.4). */
  secret: string;
  local?: boolean;
  log?: Logger;
  /**
   * Who is counted: the client (an IPv4 address or IPv6 /64, the default), or its IPv6 /48, which
   * one party can fill with /64s; requests from IPv4 (or an unknown address) skip an aggregate limiter.
   */
  scope?: 'client' | 'aggregate';
}): RateLimitRequestHandler {
  const aggregate = options.scope === 'aggregate';
  const store = options.local
    ? new MemoryStore()
    : new RedisStore({
        prefix: options.prefix,
        sendCommand: (command: string, ...args: string[]) => {
          // rate-limit-redis keeps the promise of its SCRIPT LOAD and replays it on every request:
          // one load that fails (Redis away at start, or while reloading after a restart) would
          // refuse every request until the API restarts. A script's SHA is its SHA1, so answer that
          // whatever the load did: the next EVALSHA runs, or meets NOSCRIPT and loads it again.
          if (command.toUpperCase() === 'SCRIPT' && args[0]?.toUpperCase() === 'LOAD' && args[1] !== undefined) {
            const sha = createHash('sha1').update(args[1]).digest('hex');
            return options.redis.call(command, ...args).then(
              () => sha,
              () => sha,
            );
          }
          return (options.redis.call(command, ...args) as Promise<RedisReply>).catch((error: unknown) => {
            // Redis full (maxmemory, noeviction) refuses the counter's write, not reads: let a request
            // that only reads through (status, a download's claim answers 507 by itself) rather than
            // turn every route into 507. Uploads still fail at their own writes (SPEC §3, docs/FAULTS.md).
            if (command === 'EVALSHA' && isRedisOutOfMemory(error)) {
              options.log?.warn('rate_limit_store_error', { limiter: options.name, error: 'redis out of memory: not counted' });
              return [1, options.rate.windowMs] as RedisReply;
            }
            throw error;
          });
        },
      });
  return rateLimit({
    windowMs: options.rate.windowMs,
    limit: options.rate.limit,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    identifier: options.name,
    // Our own keyGenerator: the keyed hash of req.ip as Express derives it under `trust proxy` (never
    // `true`), IPv6 per /64. express-rate-limit's IP and X-Forwarded-For checks run only inside its
    // default key generator, so a forged header from a client cannot trigger them; every other check stays on.
    keyGenerator: (req) => {
      const who = requester(req);
      return clientIdOf(options.secret, aggregate ? who.aggregate : who.client);
    },
    ...(aggregate ? { skip: (req: Request) => requester(req).kind !== 'ipv6' } : {}),
    store,
    passOnStoreError: false,
    logger: limiterLogger(options.log, options.name),
    handler: (req, _res, next, _opts) => {
      const resetTime = (req as Request & { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
      const seconds = resetTime
        ? Math.max(1, Math.ceil((resetTime.getTime() - Date.now()) / 1000))
        : Math.ceil(options.rate.windowMs / 1000);
      next(rateLimited(seconds));
    },
  });
}

/**
 * A client's limiter, then its IPv6 /48's at AGGREGATE_MULTIPLE times the rate (`aggregatePrefix` is
 * that one's store prefix): without the second, the 65,536 /64s of one /48 get 65,536 budgets, enough
 * to fill Redis. The same 429 either way; a request refused per client is not counted for its /48.
 */
export function createClientAndSiteLimiter(options: Parameters<typeof createRateLimiter>[0] & { aggregatePrefix: string }): RequestHandler {
  const { aggregatePrefix, ...clientOptions } = options;
  const perClient = createRateLimiter({ ...clientOptions, scope: 'client' });
  const limit = options.rate.limit * AGGREGATE_MULTIPLE;
  const perSite = createRateLimiter({
    ...clientOptions,
    name: `${options.name}-aggregate`,
    prefix: aggregatePrefix,
    rate: { ...options.rate, limit, text: `${options.rate.text} × ${AGGREGATE_MULTIPLE} per IPv6 /48` },
    scope: 'aggregate',
  });
  return (req, res, next) => {
    void perClient(req, res, (error?: unknown) => (error === undefined ? void perSite(req, res, next) : next(error)));
  };
}
