import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { appOnPrivateRedis } from '../helpers/app.js';

/** Resolves once the client is (again) ready; ioredis's 'ready' comes after its ready check. */
async function untilReady(redis: Redis): Promise<void> {
  if (redis.status !== 'ready') await new Promise<void>((resolve) => redis.once('ready', () => resolve()));
}

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

  // PING is not enough: a node demoted to replica answers it, and refuses every write. The node is
  // changed through a connection of the test's own (the API's drops its connection at a READONLY).
  it('answers 503 unhealthy when Redis takes no writes (a replica), and recovers when it does', async () => {
    const { redis, keys } = world.app.deps;
    const operator = new Redis(world.redis.url);
    try {
      await operator.set(keys.heartbeat(), 'x', 'EX', 15);
      await operator.replicaof('127.0.0.1', '1'); // a primary that is not there: the node stays a replica
      // The probe's READONLY makes the API drop its connection; wait for that, or a loaded machine
      // can still find the old connection "ready" below and probe through it as it closes.
      const dropped = new Promise<void>((resolve) => redis.once('close', () => resolve()));
      const res = await fetch(`${world.app.url}/health`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: 'unhealthy', services: { redis: 'offline' } });
      await dropped;
      await operator.replicaof('NO', 'ONE');
      await untilReady(redis);
      await operator.set(keys.heartbeat(), 'x', 'EX', 15);
      expect((await fetch(`${world.app.url}/health`)).status).toBe(200);
    } finally {
      await operator.replicaof('NO', 'ONE');
      operator.disconnect();
    }
  });

  it('says degraded and why when Redis is out of memory (uploads are refused, reads still work)', async () => {
    const operator = new Redis(world.redis.url);
    await untilReady(world.app.deps.redis); // the test before may leave it reconnecting
    try {
      await operator.set(world.app.deps.keys.heartbeat(), 'x', 'EX', 15);
      await operator.config('SET', 'maxmemory', '1');
      const res = await fetch(`${world.app.url}/health`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { status: string; services: { redis: string }; warnings: string[] };
      expect(body).toMatchObject({ status: 'degraded', services: { redis: 'online' } });
      expect(body.warnings.join(' ')).toContain('out of memory');
    } finally {
      await operator.config('SET', 'maxmemory', '0');
      operator.disconnect();
    }
  });
});
