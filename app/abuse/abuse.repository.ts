import { createHmac } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Redis } from 'ioredis';
import type { Config } from '../config.js';
import { rateLimited } from '../http/errors.js';
import { clientKey } from '../http/rate-limit.js';
import type { Enqueue } from '../jobs/enqueue.js';
import type { Logger } from '../shared/logger.js';
import { LOOKUP_FAILURE_WINDOW_SECONDS, type RedisKeys } from '../shared/redis-keys.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const luaDir = [path.join(here, 'lua'), path.join(here, '..', '..', '..', 'app', 'abuse', 'lua')].find((d) => existsSync(d));
if (!luaDir) throw new Error('abuse: Lua scripts not found');
const FAIL_LUA = readFileSync(path.join(luaDir, 'fail.lua'), 'utf8');

/** The keyed hash that stands for a client (`clientKey`: an IP, or an IPv6 /64) in Redis, jobs and logs. */
export function clientIdOf(secret: string, key: string): string {
  return createHmac('sha256', secret).update(`client:${key}`).digest('hex').slice(0, 32);
}

/**
 * Brute-force accounting (SPEC §4.6). A client is its socket address (or a trusted proxy's view),
 * IPv6 grouped per /64, stored only as a keyed hash: raw IPs never sit in Redis or in job data.
 */
export function createAbuseGuard(deps: { redis: Redis; keys: RedisKeys; config: Pick<Config, 'downloadFailLimit' | 'downloadBlockSeconds' | 'logIp'>; secret: string; enqueue: Enqueue; log: Logger; now: () => Date }) {
  if (!('cbxFail' in deps.redis)) deps.redis.defineCommand('cbxFail', { numberOfKeys: 3, lua: FAIL_LUA });
  const redis = deps.redis as Redis & { cbxFail: (...args: (string | number)[]) => Promise<number> };
  const clientId = (req: Request) => clientIdOf(deps.secret, clientKey(req));
  const loggedIp = (req: Request, id: string) => (deps.config.logIp === 'full' ? { ip: clientKey(req) } : deps.config.logIp === 'hash' ? { ip_hash: id } : {});

  /** Every key-taking route: a blocked client gets 429 IP_BLOCKED before any other work. */
  const blockGuard: RequestHandler = (req: Request, _res: Response, next: NextFunction) => {
    const id = clientId(req);
    redis.pttl(deps.keys.block(id)).then(
      (ttl) => (ttl > 0 ? next(rateLimited(Math.ceil(ttl / 1000), 'IP_BLOCKED')) : next()),
      (error: unknown) => next(error),
    );
  };

  /** A lookup of a key that matches no file (a 410 for a tombstoned key does not count). */
  async function recordFailure(req: Request): Promise<void> {
    const id = clientId(req);
    const blockMs = deps.config.downloadBlockSeconds * 1000;
    const until = deps.now().getTime() + blockMs;
    const started = await redis.cbxFail(deps.keys.lookupFailures(id), deps.keys.block(id), deps.keys.blockList(), LOOKUP_FAILURE_WINDOW_SECONDS, deps.config.downloadFailLimit, blockMs, until, id);
    if (started === 1) {
      deps.log.warn('ip_blocked', { ...loggedIp(req, id), client: id, block_seconds: deps.config.downloadBlockSeconds, request_id: req.id });
      await deps.enqueue('unblock', { client: id, until }, { delayMs: blockMs });
    }
  }

  return { blockGuard, recordFailure, clientId };
}

export type AbuseGuard = ReturnType<typeof createAbuseGuard>;
