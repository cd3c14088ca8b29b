import { ipKeyGenerator, rateLimit, type RateLimitRequestHandler } from 'express-rate-limit';
import type { Request } from 'express';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import type { Redis } from 'ioredis';
import type { Rate } from './rate.models.js';
import { rateLimited } from './errors.js';

/** The client a limit counts: the socket address (or a trusted proxy's), IPv6 grouped per /64. */
export function clientKey(req: Request): string {
  return ipKeyGenerator(req.ip ?? req.socket.remoteAddress ?? 'unknown', 64);
}

/**
 * A limiter whose counts live in Redis, so every API replica shares them. `failOpen` is for health
 * only: key-taking routes and uploads fail closed (503) when the store cannot be reached.
 */
export function createRateLimiter(options: {
  name: string;
  rate: Rate;
  redis: Redis;
  prefix: string;
  failOpen?: boolean;
}): RateLimitRequestHandler {
  const store = new RedisStore({
    prefix: options.prefix,
    sendCommand: (command: string, ...args: string[]) => options.redis.call(command, ...args) as Promise<RedisReply>,
  });
  return rateLimit({
    windowMs: options.rate.windowMs,
    limit: options.rate.limit,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    identifier: options.name,
    keyGenerator: clientKey,
    store,
    passOnStoreError: options.failOpen ?? false,
    handler: (req, _res, next, _opts) => {
      const resetTime = (req as Request & { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
      const seconds = resetTime ? Math.max(1, Math.ceil((resetTime.getTime() - Date.now()) / 1000)) : Math.ceil(options.rate.windowMs / 1000);
      next(rateLimited(seconds));
    },
  });
}
