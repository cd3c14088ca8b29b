import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createSilentLogger, type Logger } from '../../app/shared/logger.js';
import { redisKeys } from '../../app/shared/redis-keys.js';
import { createBlobGuard, type BlobGuard } from '../../app/blobs/blobs.repository.js';
import { leaseGrace, sweepOrphans, type BlobsDeps } from '../../app/blobs/blobs.usecases.js';
import { LEASE_TTL_MS } from '../../app/blobs/lease.js';
import type { JobContext } from '../../app/jobs/catalogue.js';
import { createHandlers, DEFER_MARGIN_MS } from '../../workers/janitor.js';
import { testEnv, uniquePrefix } from '../helpers/app.js';
import { storageFor, type StorageView } from '../helpers/engine.js';

// The janitor's building blocks in-process, against the suite's real Redis and the project's storage
// engine, for the cases a worker process cannot easily be pushed into (a failing item, a record about
// to expire). The fs engine's own shred (symlinks, hard links, empty files) is in janitor-sweep.fs.test.ts.

const newBlobId = () => randomBytes(24).toString('base64url');
const AGES_AGO = 3_600_000;

function recordingLogger(lines: { event: string; fields: Record<string, unknown> }[]): Logger {
  const record = (event: string, fields: Record<string, unknown> = {}) => void lines.push({ event, fields });
  const logger: Logger = { error: record, warn: record, info: record, debug: record, child: () => logger, close: () => Promise.resolve() };
  return logger;
}

/** A guard that cannot answer for one blob: that blob's protection is unknown. */
function failingFor(guard: BlobGuard, blobId: string): BlobGuard {
  return {
    ...guard,
    protection: (id, now) => (id === blobId ? Promise.reject(new Error('Connection is closed.')) : guard.protection(id, now)),
  };
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

describe('the janitor in-process', () => {
  let redis: Redis;
  let dir: string;
  /** This test's blobs, on the project's engine (its own directories, or its own key prefix). */
  let storage: StorageView;
  let keys: ReturnType<typeof redisKeys>;
  const blobsFor = (log: Logger = createSilentLogger(), guard: BlobGuard = createBlobGuard(redis, keys)): BlobsDeps => ({
    store: storage.store,
    guard,
    log,
    now: Date.now,
  });
  const oldBlob = (blobId: string) => storage.put(blobId, randomBytes(100), { ageMs: AGES_AGO });
  /** The worker's job handlers over this suite's Redis and storage. */
  const handlersFor = (log: Logger = createSilentLogger(), guard?: BlobGuard) =>
    createHandlers({ config: { orphanAgeMinutes: 1 }, blobs: blobsFor(log, guard), redis, keys, log, workerId: 'w' });

  beforeAll(() => {
    redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  });
  afterAll(() => {
    redis.disconnect();
  });
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-sweep-'));
    const prefix = uniquePrefix();
    keys = redisKeys(prefix);
    const env = testEnv(dir, prefix, inject('redisUrl'));
    await mkdir(env.STORAGE_PATH!);
    await mkdir(env.TEMP_PATH!);
    storage = await storageFor(env);
    return async () => {
      await storage.clear();
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    };
  });

  it('keeps sweeping when one file fails, counts it as failed and never shreds what it could not check', async () => {
    const [bad, good1, good2] = [newBlobId(), newBlobId(), newBlobId()];
    for (const id of [bad, good1, good2]) await oldBlob(id);
    const lines: { event: string; fields: Record<string, unknown> }[] = [];
    const log = recordingLogger(lines);

    const counts = await sweepOrphans({ ...blobsFor(log, failingFor(createBlobGuard(redis, keys), bad)), orphanAgeMs: 60_000 });

    expect(counts).toEqual({ scanned: 3, shredded: 2, failed: 1, kept_live: 0, kept_leased: 0, kept_young: 0 });
    expect(await storage.has(bad)).toBe(true);
    expect(await storage.has(good1)).toBe(false);
    expect(await storage.has(good2)).toBe(false);
    expect(lines.find((l) => l.event === 'sweep_item_failed')?.fields).toEqual({ kind: 'blob', error: 'Connection is closed.' });
  });

  it('fails the sweep job (so it is retried) after sweeping the rest and logging the counts, when an item failed', async () => {
    const [bad, good] = [newBlobId(), newBlobId()];
    for (const id of [bad, good]) await oldBlob(id);
    const lines: { event: string; fields: Record<string, unknown> }[] = [];
    const log = recordingLogger(lines);
    const handlers = handlersFor(log, failingFor(createBlobGuard(redis, keys), bad));

    await expect(handlers.sweep({ trigger: 'manual' }, recordingContext('sweep-manual'))).rejects.toThrow(
      '1 of 2 files could not be swept',
    );

    expect(await storage.has(good)).toBe(false);
    expect(lines.find((l) => l.event === 'orphan_swept')?.fields).toMatchObject({ shredded: 1, failed: 1 });
    // The lock was released: the retry can run at once.
    expect(await redis.exists(`${keys.prefix}:janitor:sweep-lock`)).toBe(0);
  });

  it('runs an expire job that fires a moment before its record expires again at the expiry, without destroying anything', async () => {
    const blobId = newBlobId();
    await storage.put(blobId, randomBytes(100));
    const expires = Date.now() + 300;
    await redis.zadd(keys.blob(blobId), expires, 'live');
    const handlers = handlersFor();
    const context = recordingContext(`expire-${blobId}`);

    await handlers.expire({ blobId }, context);

    expect(context.deferredUntil).toBe(expires + DEFER_MARGIN_MS);
    expect(await storage.has(blobId)).toBe(true);
  });

  it('destroys an expired blob once nothing protects it, and logs file_expired with its size', async () => {
    const blobId = newBlobId();
    await storage.put(blobId, randomBytes(100));
    await redis.zadd(keys.blob(blobId), Date.now() - 1, 'live');
    const lines: { event: string; fields: Record<string, unknown> }[] = [];
    const log = recordingLogger(lines);
    const handlers = handlersFor(log);
    const context = recordingContext(`expire-${blobId}`);

    await handlers.expire({ blobId }, context);

    expect(context.deferredUntil).toBeNull();
    expect(await storage.has(blobId)).toBe(false);
    expect(lines.filter((l) => l.event === 'file_expired')).toEqual([{ event: 'file_expired', fields: { size: 100 } }]);
  });

  it('waits for a running download: a shred of a leased blob runs again when the lease ends, and the sweep keeps it', async () => {
    const blobId = newBlobId();
    await oldBlob(blobId);
    const guard = createBlobGuard(redis, keys);
    const leaseEnds = Date.now() + 30_000;
    await guard.lease(blobId, 'lease-of-a-download', leaseEnds);
    const handlers = handlersFor();
    const context = recordingContext(`shred-${blobId}`);

    await handlers.shred({ blobId, reason: 'burned' }, context);
    expect(context.deferredUntil).toBe(leaseEnds + DEFER_MARGIN_MS);
    expect(await sweepOrphans({ ...blobsFor(), orphanAgeMs: 60_000 })).toMatchObject({ scanned: 1, shredded: 0, kept_leased: 1 });
    expect(await storage.has(blobId)).toBe(true);

    expect(await guard.release(blobId, 'lease-of-a-download', Date.now())).toEqual({ live: false, leases: 0, until: null });
    const again = recordingContext(`shred-${blobId}`);
    await handlers.shred({ blobId, reason: 'released' }, again);
    expect(again.deferredUntil).toBeNull();
    expect(await storage.has(blobId)).toBe(false);
  });

  // After a Redis outage, a lease its holder could not renew has a score in the past while its
  // download still streams: the janitor must give the holder one TTL to renew (SPEC §10.1).
  it('destroys nothing during the grace after a reconnect, though a lapsed lease no longer protects the blob', async () => {
    const blobId = newBlobId();
    await oldBlob(blobId);
    const guard = createBlobGuard(redis, keys);
    await guard.lease(blobId, 'lease-renewed-before-the-outage', Date.now() - 1_000);
    const graceEnds = Date.now() + 15_000;
    const inGrace = { ...blobsFor(), graceUntil: () => graceEnds };
    const handlers = createHandlers({
      config: { orphanAgeMinutes: 1 },
      blobs: inGrace,
      redis,
      keys,
      log: createSilentLogger(),
      workerId: 'w',
    });
    const context = recordingContext(`shred-${blobId}`);

    await handlers.shred({ blobId, reason: 'deleted' }, context);
    expect(context.deferredUntil).toBe(graceEnds + DEFER_MARGIN_MS);
    expect(await sweepOrphans({ ...inGrace, orphanAgeMs: 60_000 })).toMatchObject({ scanned: 1, shredded: 0, kept_leased: 1 });
    expect(await storage.has(blobId)).toBe(true);

    // Once the grace is over, a lease still not renewed is over too.
    const after = recordingContext(`shred-${blobId}`);
    await handlersFor().shred({ blobId, reason: 'deleted' }, after);
    expect(after.deferredUntil).toBeNull();
    expect(await storage.has(blobId)).toBe(false);
  });

  it("starts the grace at each reconnect of the janitor's Redis client, not at its first connection", async () => {
    const client = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null, connectionName: `grace-${keys.prefix}` });
    try {
      await new Promise<void>((resolve) => client.once('ready', () => resolve()));
      const graceUntil = leaseGrace(client);
      expect(graceUntil()).toBe(0);
      const reconnected = new Promise<void>((resolve) => client.once('ready', () => resolve()));
      const id = await client.client('ID');
      await redis.client('KILL', 'ID', String(id));
      await reconnected;
      expect(graceUntil()).toBeGreaterThan(Date.now() + LEASE_TTL_MS - 5_000);
    } finally {
      client.disconnect();
    }
  });
});
