import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createSilentLogger, type Logger } from '../../app/shared/logger.js';
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

  it('rewrites its health file on each beat that reaches Redis only, and warns once while the file cannot be written', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-beat-'));
    const warnings: { event: string; fields?: Record<string, unknown> }[] = [];
    const log: Logger = { ...createSilentLogger(), warn: (event, fields) => warnings.push({ event, ...(fields ? { fields } : {}) }) };
    try {
      const healthFile = path.join(dir, 'worker.beat');
      const keys = redisKeys(uniquePrefix());
      const a = startHeartbeat({ redis, keys, log, workerId: 'a', healthFile });
      await a.beat();
      const first = await stat(healthFile);
      expect(Date.parse((await readFile(healthFile, 'utf8')).trim())).toBeGreaterThan(Date.now() - 10_000);
      await a.beat();
      expect((await stat(healthFile)).mtimeMs).toBeGreaterThanOrEqual(first.mtimeMs);
      await a.stop();

      // Redis refuses: the beat fails and the file is not touched.
      const down = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
      const cutOff = path.join(dir, 'cut-off.beat');
      const b = startHeartbeat({ redis: down, keys, log, workerId: 'b', healthFile: cutOff });
      await b.beat();
      await expect(stat(cutOff)).rejects.toMatchObject({ code: 'ENOENT' });
      expect(warnings.map((w) => w.event)).toEqual(['heartbeat_failed']);
      await b.stop();
      down.disconnect();

      // The file's directory is missing: one warning for the spell, naming the file, not one per beat.
      warnings.length = 0;
      const unwritable = path.join(dir, 'missing', 'worker.beat');
      const c = startHeartbeat({ redis, keys, log, workerId: 'c', healthFile: unwritable });
      await c.beat();
      await c.beat();
      expect(warnings).toEqual([{ event: 'health_file_failed', fields: { file: unwritable, error: 'ENOENT' } }]);
      await c.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
