import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createSilentLogger, type Logger } from '../../app/shared/logger.js';
import { redisKeys } from '../../app/shared/redis-keys.js';
import { createHandlers } from '../../workers/janitor.js';
import { shredFile } from '../../workers/shred.js';
import { sweepOrphans } from '../../workers/sweep.js';
import { uniquePrefix } from '../helpers/app.js';

// The janitor's building blocks in-process, against the suite's real Redis, for the cases a worker
// process cannot easily be pushed into (a failing item, a symlink, a record about to expire).

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );
const newBlobId = () => randomBytes(24).toString('base64url');

function recordingLogger(lines: { event: string; fields: Record<string, unknown> }[]): Logger {
  const record = (event: string, fields: Record<string, unknown> = {}) => void lines.push({ event, fields });
  const logger: Logger = { error: record, warn: record, info: record, debug: record, child: () => logger, close: () => Promise.resolve() };
  return logger;
}

/** A Redis that cannot answer EXISTS for one blob's key: that blob's liveness is unknown. */
function failingFor(redis: Redis, key: string): Redis {
  return new Proxy(redis, {
    get(target, property, receiver) {
      if (property === 'exists') return (k: string) => (k === key ? Promise.reject(new Error('Connection is closed.')) : target.exists(k));
      return Reflect.get(target, property, receiver) as unknown;
    },
  });
}

async function oldFile(filePath: string): Promise<void> {
  await writeFile(filePath, randomBytes(100));
  await utimes(filePath, new Date(0), new Date(0));
}

describe('the janitor in-process', () => {
  let redis: Redis;
  let dir: string;
  let storagePath: string;
  let tempPath: string;

  beforeAll(() => {
    redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  });
  afterAll(() => {
    redis.disconnect();
  });
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-sweep-'));
    storagePath = path.join(dir, 'uploads');
    tempPath = path.join(dir, 'temp');
    await mkdir(storagePath);
    await mkdir(tempPath);
    return () => rm(dir, { recursive: true, force: true });
  });

  it('keeps sweeping when one file fails, counts it as failed and never shreds what it could not check', async () => {
    const keys = redisKeys(uniquePrefix());
    const [bad, good1, good2] = [newBlobId(), newBlobId(), newBlobId()];
    for (const id of [bad, good1, good2]) await oldFile(path.join(storagePath, id));
    const flaky = failingFor(redis, keys.blob(bad));
    const lines: { event: string; fields: Record<string, unknown> }[] = [];

    const counts = await sweepOrphans({ storagePath, tempPath, orphanAgeMinutes: 1, shredPasses: 1, redis: flaky, keys, log: recordingLogger(lines), now: Date.now });

    expect(counts).toEqual({ scanned: 3, shredded: 2, failed: 1, kept_live: 0, kept_young: 0 });
    expect(await exists(path.join(storagePath, bad))).toBe(true);
    expect(await exists(path.join(storagePath, good1))).toBe(false);
    expect(await exists(path.join(storagePath, good2))).toBe(false);
    expect(lines.find((l) => l.event === 'sweep_item_failed')?.fields).toEqual({ kind: 'blob', error: 'Connection is closed.' });
  });

  it('fails the sweep job (so it is retried) after sweeping the rest and logging the counts, when an item failed', async () => {
    const keys = redisKeys(uniquePrefix());
    const [bad, good] = [newBlobId(), newBlobId()];
    for (const id of [bad, good]) await oldFile(path.join(storagePath, id));
    const lines: { event: string; fields: Record<string, unknown> }[] = [];
    const handlers = createHandlers({ config: { storagePath, tempPath, shredPasses: 1, orphanAgeMinutes: 1 }, redis: failingFor(redis, keys.blob(bad)), keys, log: recordingLogger(lines), workerId: 'w' });

    await expect(handlers.sweep({ trigger: 'manual' }, { jobId: 'sweep-manual', attempt: 1 })).rejects.toThrow('1 of 2 files could not be swept');

    expect(await exists(path.join(storagePath, good))).toBe(false);
    expect(lines.find((l) => l.event === 'orphan_swept')?.fields).toMatchObject({ shredded: 1, failed: 1 });
    // The lock was released: the retry can run at once.
    expect(await redis.exists(`${keys.prefix}:janitor:sweep-lock`)).toBe(0);
  });

  it('removes a symlink planted in the storage directory without touching its target', async () => {
    const target = path.join(dir, 'precious');
    await writeFile(target, 'keep me');
    const link = path.join(storagePath, newBlobId());
    await symlink(target, link);

    await shredFile(link, { passes: 1, kind: 'blob', log: createSilentLogger() });

    expect(await exists(link)).toBe(false);
    expect(await readFile(target, 'utf8')).toBe('keep me');
  });

  it('shreds an empty file, and a missing one is success', async () => {
    const empty = path.join(storagePath, newBlobId());
    await writeFile(empty, '');
    expect(await shredFile(empty, { passes: 3, kind: 'blob', log: createSilentLogger() })).toEqual({ found: true, size: 0 });
    expect(await exists(empty)).toBe(false);
    expect(await shredFile(empty, { passes: 3, kind: 'blob', log: createSilentLogger() })).toEqual({ found: false, size: 0 });
  });

  it('waits for a record that expires a moment after its expire job fires, then shreds the blob', async () => {
    const keys = redisKeys(uniquePrefix());
    const blobId = newBlobId();
    await writeFile(path.join(storagePath, blobId), randomBytes(100));
    await redis.set(keys.blob(blobId), 'lookup', 'PX', 300);
    const lines: { event: string; fields: Record<string, unknown> }[] = [];
    const handlers = createHandlers({ config: { storagePath, tempPath, shredPasses: 1, orphanAgeMinutes: 1 }, redis, keys, log: recordingLogger(lines), workerId: 'w' });

    await handlers.expire({ blobId }, { jobId: `expire-${blobId}`, attempt: 1 });

    expect(await exists(path.join(storagePath, blobId))).toBe(false);
    expect(lines.filter((l) => l.event === 'file_expired')).toEqual([{ event: 'file_expired', fields: { size: 100 } }]);
  });
});
