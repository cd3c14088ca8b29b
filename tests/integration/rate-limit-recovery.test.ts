import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createRateLimiter } from '../../app/http/rate-limit.js';
import { startTestRedis, type TestRedis } from '../helpers/redis-server.js';

/**
 * rate-limit-redis loads its scripts once and replays that load's outcome on every request: a load
 * that failed (Redis away when the API built its limiters, or while it reloaded them after a Redis
 * restart) refused every request with 503 until the API restarted, with Redis long back.
 */
describe('a Redis rate limiter whose script load failed', () => {
  let redis: TestRedis;
  let client: Redis;
  afterAll(async () => {
    client?.disconnect();
    await redis?.destroy();
  });

  it('counts again once Redis is back, without a restart', async () => {
    redis = await startTestRedis();
    await redis.stop();
    // As the API's client: no offline queue, so the load fails at once while Redis is away.
    client = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    client.on('error', () => undefined);
    const limiter = createRateLimiter({
      name: 'probe',
      rate: { limit: 2, windowMs: 60_000, text: '2/minute' },
      redis: client,
      prefix: 'cbx-rl-recovery:',
      secret: 'x'.repeat(32),
    });
    const app = express();
    app.use(limiter, (_req, res) => void res.send('ok'));
    app.use((error: { status?: number }, _req: Request, res: Response, _next: NextFunction) => void res.status(error.status ?? 503).end());
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      expect((await fetch(url)).status).toBe(503); // Redis away: the limiter fails closed

      await redis.start();
      if (client.status !== 'ready') await once(client, 'ready');
      // Counted in Redis again: two requests in, the third over the limit.
      expect((await fetch(url)).status).toBe(200);
      expect((await fetch(url)).status).toBe(200);
      expect((await fetch(url)).status).toBe(429);
    } finally {
      server.close();
    }
  });
});
