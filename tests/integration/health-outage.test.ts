import { describe, expect, it } from 'vitest';
import { appOnPrivateRedis } from '../helpers/app.js';

describe('health during a Redis outage', () => {
  const world = appOnPrivateRedis();

  it('answers 503 unhealthy within about a second when Redis stops, and recovers without a restart', async () => {
    await world.redis.stop();
    const started = Date.now();
    const res = await fetch(`${world.app.url}/health`);
    const elapsed = Date.now() - started;
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: 'unhealthy', services: { redis: 'offline', scheduler: 'offline' } });
    expect(elapsed).toBeLessThan(2_000);

    const ready = new Promise<void>((resolve) => world.app.deps.redis.once('ready', () => resolve()));
    await world.redis.start();
    await ready;
    await world.app.deps.redis.set(world.app.deps.keys.heartbeat(), 'x', 'EX', 15);
    const after = await fetch(`${world.app.url}/health`);
    expect(after.status).toBe(200);
    expect(await after.json()).toMatchObject({ status: 'healthy', services: { redis: 'online' } });
  });

  it('says degraded and names the policy when Redis may evict keys', async () => {
    await world.app.deps.redis.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      await world.app.deps.redis.set(world.app.deps.keys.heartbeat(), 'x', 'EX', 15);
      const res = await fetch(`${world.app.url}/health`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { status: string; warnings: string[] };
      expect(body.status).toBe('degraded');
      expect(body.warnings.join(' ')).toContain('allkeys-lru');
    } finally {
      await world.app.deps.redis.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });
});
