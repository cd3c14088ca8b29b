import { randomBytes } from 'node:crypto';
import { link, mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createSilentLogger, type Logger } from '../../app/shared/logger.js';
import { redisKeys } from '../../app/shared/redis-keys.js';
import { createFsStore } from '../../app/blobs/fs-store.js';
import { createBlobGuard, type BlobGuard } from '../../app/blobs/blobs.repository.js';
import { sweepOrphans, type BlobsDeps } from '../../app/blobs/blobs.usecases.js';
import { shredFile } from '../../app/blobs/fs-shred.js';
import type { JobContext } from '../../app/jobs/catalogue.js';
import { createHandlers, DEFER_MARGIN_MS } from '../../workers/janitor.js';
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

/** A guard that cannot answer for one blob: that blob's protection is unknown. */
function failingFor(guard: BlobGuard, blobId: string): BlobGuard {
  return { ...guard, protection: (id, now) => (id === blobId ? Promise.reject(new Error('Connection is closed.')) : guard.protection(id, now)) };
}

/** A job context that records when the handler asked to run again, instead of moving a real job. */
function recordingContext(jobId: string): JobContext & { deferredUntil: number | null } {
  const context = {
    jobId,
    attempt: 1,
    deferredUntil: null as number | null,
    defer: (until: number) => {
      context.deferredUntil = until;
      return Promise.resolve();
    },
  };
  return context;
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
  const blobsFor = (keys: ReturnType<typeof redisKeys>, log: Logger = createSilentLogger(), guard: BlobGuard = createBlobGuard(redis, keys)): BlobsDeps => ({
    store: createFsStore({ storagePath, tempPath, shredPasses: 1, log }),
    guard,
    log,
    now: Date.now,
  });

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
    const lines: { event: string; fields: Record<string, unknown> }[] = [];
    const log = recordingLogger(lines);

    const counts = await sweepOrphans({ ...blobsFor(keys, log, failingFor(createBlobGuard(redis, keys), bad)), orphanAgeMs: 60_000 });

    expect(counts).toEqual({ scanned: 3, shredded: 2, failed: 1, kept_live: 0, kept_leased: 0, kept_young: 0 });
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
    const log = recordingLogger(lines);
    const handlers = createHandlers({ config: { orphanAgeMinutes: 1 }, blobs: blobsFor(keys, log, failingFor(createBlobGuard(redis, keys), bad)), redis, keys, log, workerId: 'w' });

    await expect(handlers.sweep({ trigger: 'manual' }, recordingContext('sweep-manual'))).rejects.toThrow('1 of 2 files could not be swept');

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

  it('runs an expire job that fires a moment before its record expires again at the expiry, without destroying anything', async () => {
    const keys = redisKeys(uniquePrefix());
    const blobId = newBlobId();
    await writeFile(path.join(storagePath, blobId), randomBytes(100));
    const expires = Date.now() + 300;
    await redis.zadd(keys.blob(blobId), expires, 'live');
    const handlers = createHandlers({ config: { orphanAgeMinutes: 1 }, blobs: blobsFor(keys), redis, keys, log: createSilentLogger(), workerId: 'w' });
    const context = recordingContext(`expire-${blobId}`);

    await handlers.expire({ blobId }, context);

    expect(context.deferredUntil).toBe(expires + DEFER_MARGIN_MS);
    expect(await exists(path.join(storagePath, blobId))).toBe(true);
  });

  it('destroys an expired blob once nothing protects it, and logs file_expired with its size', async () => {
    const keys = redisKeys(uniquePrefix());
    const blobId = newBlobId();
    await writeFile(path.join(storagePath, blobId), randomBytes(100));
    await redis.zadd(keys.blob(blobId), Date.now() - 1, 'live');
    const lines: { event: string; fields: Record<string, unknown> }[] = [];
    const log = recordingLogger(lines);
    const handlers = createHandlers({ config: { orphanAgeMinutes: 1 }, blobs: blobsFor(keys, log), redis, keys, log, workerId: 'w' });
    const context = recordingContext(`expire-${blobId}`);

    await handlers.expire({ blobId }, context);

    expect(context.deferredUntil).toBeNull();
    expect(await exists(path.join(storagePath, blobId))).toBe(false);
    expect(lines.filter((l) => l.event === 'file_expired')).toEqual([{ event: 'file_expired', fields: { size: 100 } }]);
  });

  it('waits for a running download: a shred of a leased blob runs again when the lease ends, and the sweep keeps it', async () => {
    const keys = redisKeys(uniquePrefix());
    const blobId = newBlobId();
    await oldFile(path.join(storagePath, blobId));
    const guard = createBlobGuard(redis, keys);
    const leaseEnds = Date.now() + 30_000;
    await guard.lease(blobId, 'lease-of-a-download', leaseEnds);
    const handlers = createHandlers({ config: { orphanAgeMinutes: 1 }, blobs: blobsFor(keys), redis, keys, log: createSilentLogger(), workerId: 'w' });
    const context = recordingContext(`shred-${blobId}`);

    await handlers.shred({ blobId, reason: 'burned' }, context);
    expect(context.deferredUntil).toBe(leaseEnds + DEFER_MARGIN_MS);
    expect(await sweepOrphans({ ...blobsFor(keys), orphanAgeMs: 60_000 })).toMatchObject({ scanned: 1, shredded: 0, kept_leased: 1 });
    expect(await exists(path.join(storagePath, blobId))).toBe(true);

    expect(await guard.release(blobId, 'lease-of-a-download', Date.now())).toEqual({ live: false, leases: 0, until: null });
    const again = recordingContext(`shred-${blobId}`);
    await handlers.shred({ blobId, reason: 'released' }, again);
    expect(again.deferredUntil).toBeNull();
    expect(await exists(path.join(storagePath, blobId))).toBe(false);
  });

  it('unlinks a hard-linked file without overwriting it: the other name keeps its content', async () => {
    const outside = path.join(dir, 'someone-elses-file');
    await writeFile(outside, 'not ours to overwrite');
    const blobId = newBlobId();
    await link(outside, path.join(storagePath, blobId));
    const lines: { event: string; fields: Record<string, unknown> }[] = [];

    const result = await createFsStore({ storagePath, tempPath, shredPasses: 2, log: recordingLogger(lines) }).destroy(blobId, 'orphan');

    expect(result.found).toBe(true);
    expect(await exists(path.join(storagePath, blobId))).toBe(false);
    expect(await readFile(outside, 'utf8')).toBe('not ours to overwrite');
    expect(lines.find((l) => l.event === 'shred_hard_link_unlinked')?.fields).toEqual({ kind: 'blob', links: 2 });
  });
});
