import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { startTestRedis, type TestRedis } from '../helpers/redis-server.js';

describe('health during a Redis outage', () => {
  let redis: TestRedis;
  let app: TestApp;
  beforeAll(async () => {
    redis = await startTestRedis();
    app = await startTestApp({ redisUrl: redis.url });
  });
  afterAll(async () => {
    await app.close();
    await redis.destroy();
  });

  it('answers 503 unhealthy within about a second when Redis stops, and recovers without a restart', async () => {
    await redis.stop();
    const started = Date.now();
    const res = await fetch(`${app.url}/health`);
    const elapsed = Date.now() - started;
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: 'unhealthy', services: { redis: 'offline', scheduler: 'offline' } });
    expect(elapsed).toBeLessThan(2_000);

    const ready = new Promise<void>((resolve) => app.deps.redis.once('ready', () => resolve()));
    await redis.start();
    await ready;
    await app.deps.redis.set(app.deps.keys.heartbeat(), 'x', 'EX', 15);
    const after = await fetch(`${app.url}/health`);
    expect(after.status).toBe(200);
    expect(await after.json()).toMatchObject({ status: 'healthy', services: { redis: 'online' } });
  });

  it('says degraded and names the policy when Redis may evict keys', async () => {
    await app.deps.redis.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      await app.deps.redis.set(app.deps.keys.heartbeat(), 'x', 'EX', 15);
      const res = await fetch(`${app.url}/health`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { status: string; warnings: string[] };
      expect(body.status).toBe('degraded');
      expect(body.warnings.join(' ')).toContain('allkeys-lru');
    } finally {
      await app.deps.redis.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });
});
