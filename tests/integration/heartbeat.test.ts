import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createSilentLogger } from '../../app/shared/logger.js';
import { redisKeys } from '../../app/shared/redis-keys.js';
import { startHeartbeat } from '../../workers/heartbeat.js';
import { uniquePrefix } from '../helpers/app.js';

/** The worker's heartbeat key, shared by every replica: a stopping one removes only its own beat. */
describe("the worker's heartbeat", () => {
  const redis = new Redis(inject('redisUrl'));
  afterAll(() => redis.disconnect());
  const replica = (keys: ReturnType<typeof redisKeys>, workerId: string) =>
    startHeartbeat({ redis, keys, log: createSilentLogger(), workerId });
  const beatOf = async (keys: ReturnType<typeof redisKeys>) => {
    const value = await redis.get(keys.heartbeat());
    return value === null ? null : (JSON.parse(value) as { worker: string }).worker;
  };

  it('is removed by a stopping replica that wrote the last beat, so health sees the stop at once', async () => {
    const keys = redisKeys(uniquePrefix());
    const a = replica(keys, 'a');
    await a.beat();
    expect(await beatOf(keys)).toBe('a');
    await a.stop();
    expect(await beatOf(keys)).toBeNull();
  });

  it('is removed by a stop that comes while its first beat is still on its way', async () => {
    const keys = redisKeys(uniquePrefix());
    const a = replica(keys, 'a');
    const beat = a.beat(); // not awaited: the stop starts before Redis has answered it
    await a.stop();
    await beat;
    expect(await beatOf(keys)).toBeNull();
  });

  it('stays when another replica beat after it, even when that beat lands while the stop looks at the key', async () => {
    const keys = redisKeys(uniquePrefix());
    const [a, b] = [replica(keys, 'a'), replica(keys, 'b')];
    await a.beat();
    await b.beat();
    await a.stop();
    expect(await beatOf(keys)).toBe('b');

    // b's next beat reaches Redis right after the first command of c's stop (c wrote the beat before).
    const c = replica(keys, 'c');
    await c.beat();
    const realSend = redis.sendCommand.bind(redis);
    redis.sendCommand = ((command: Parameters<typeof realSend>[0], stream?: Parameters<typeof realSend>[1]) => {
      redis.sendCommand = realSend;
      const sent = realSend(command, stream);
      void command.promise.then(() => b.beat());
      return sent;
    }) as typeof redis.sendCommand;
    await c.stop();
    expect(await beatOf(keys)).toBe('b');
    await b.stop();
    expect(await beatOf(keys)).toBeNull();
  });
});
