import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIds } from '../../app/jobs/catalogue.js';
import { testEngine } from '../helpers/engine.js';
import {
  createJanitor,
  initialSweepsDone,
  killWorkersAfterEach,
  linesOf,
  logLines,
  newBlobId,
  waitForLogs,
  type Janitor,
  type Line,
} from '../helpers/janitor.js';
import { runTs, type RunningProcess } from '../helpers/processes.js';

// The janitor worker as a real process, on the project's storage engine. What only the fs engine can
// show (an overwrite seen through an open descriptor, a shred long enough to interrupt) is in
// janitor.fs.test.ts.

const HOUR = 3_600_000;

killWorkersAfterEach();

describe('the janitor worker', () => {
  describe('its jobs', () => {
    let janitor: Janitor;
    let worker: RunningProcess;

    beforeAll(async () => {
      janitor = await createJanitor();
      // Started here, not with startWorker(): it lives for the whole block, not one test.
      worker = runTs('workers/main.ts', janitor.env);
      await worker.waitForEvent('worker_started');
      await initialSweepsDone(worker);
    });
    afterAll(async () => {
      worker.child.kill('SIGTERM');
      await worker.exited;
      await janitor.close();
    });

    it('shreds a blob and its leftover partial on a shred job, logging blob_shredded without the blob id', async () => {
      const blobId = newBlobId();
      await janitor.storage.put(blobId, randomBytes(64 * 1024));
      await janitor.storage.putPartial(blobId, randomBytes(1000));
      const before = linesOf('blob_shredded', worker).length;

      await janitor.finished(await janitor.enqueue('shred', { blobId, reason: 'burned' }));

      expect(await janitor.storage.has(blobId)).toBe(false);
      // fs shreds the partial file; s3 aborts the multipart upload where the store lists them (s3rver
      // lists none and cannot abort one: its parts are left to the bucket's lifecycle rule).
      const partialsListed = await janitor.storage.partialsListed();
      expect(await janitor.storage.hasPartial(blobId)).toBe(!partialsListed);
      const shredded = linesOf('blob_shredded', worker).slice(before);
      // fs overwrites in place, once, and shreds the partial file too; an object cannot be overwritten
      // in place: crypto-shred plus DeleteObject, so no passes.
      const fs = testEngine() === 'fs';
      expect(shredded).toEqual([
        expect.objectContaining({
          level: 'info',
          service: 'worker',
          kind: 'blob',
          size: 64 * 1024,
          passes: fs ? 1 : 0,
          duration_ms: expect.any(Number),
          reason: 'burned',
        }),
        ...(fs ? [expect.objectContaining({ kind: 'partial', size: 1000, passes: 1 })] : []),
      ]);
      expect(worker.stdout()).not.toContain(blobId);
    });

    it('treats a blob that is already gone as shredded (the job is idempotent)', async () => {
      const blobId = newBlobId();
      await janitor.finished(await janitor.enqueue('shred', { blobId, reason: 'deleted' }));
      const job = await janitor.queue.queue.getJob(jobIds.shred({ blobId, reason: 'deleted' }));
      expect(await job?.getState()).toBe('completed');
    });

    it("runs a delete's shred at once while a burn's shred of the same blob waits for its resume window", async () => {
      // A burn whose download failed before its first byte gives its use back; the sender may then
      // delete the file while the burn's shred is still due an hour later.
      const blobId = newBlobId();
      await janitor.storage.put(blobId, randomBytes(4096));
      const burn = await janitor.enqueue('shred', { blobId, reason: 'burned' }, { delayMs: HOUR });

      await janitor.finished(await janitor.enqueue('shred', { blobId, reason: 'deleted' }), 10_000);

      expect(await janitor.storage.has(blobId)).toBe(false);
      expect(await (await janitor.queue.queue.getJob(burn))?.getState()).toBe('delayed');
    });

    it('shreds an expired blob whose record is gone, within seconds of the expiry, and logs file_expired', async () => {
      const blobId = newBlobId();
      await janitor.storage.put(blobId, randomBytes(5000));
      const before = linesOf('file_expired', worker).length;

      const jobId = await janitor.enqueue('expire', { blobId }, { delayMs: 500 });
      expect(await (await janitor.queue.queue.getJob(jobId))?.getState()).toBe('delayed');
      await janitor.finished(jobId, 5_000);

      expect(await janitor.storage.has(blobId)).toBe(false);
      expect(linesOf('file_expired', worker).slice(before)).toEqual([expect.objectContaining({ level: 'info', size: 5000 })]);
    });

    it('keeps a blob whose record is still live when its expire job runs, and runs the job again at the expiry', async () => {
      const blobId = newBlobId();
      await janitor.storage.put(blobId, randomBytes(5000));
      const expires = Date.now() + 60_000;
      await janitor.redis.zadd(janitor.keys.blob(blobId), expires, 'live');
      const since = worker.mark();

      const jobId = await janitor.enqueue('expire', { blobId });
      const deferred = await worker.waitForEvent('destroy_deferred', 10_000, { since });

      expect(deferred).toMatchObject({ reason: 'expired', until: expires });
      expect(await (await janitor.queue.queue.getJob(jobId))?.getState()).toBe('delayed');
      expect(await janitor.storage.has(blobId)).toBe(true);
    });

    it('sweeps old orphans, unknown files and stale partials; keeps live blobs, leased blobs and partials, and fresh partials', async () => {
      const orphan = newBlobId();
      const live = newBlobId();
      const leased = newBlobId();
      const youngOrphan = newBlobId();
      const stalePartial = newBlobId();
      const leasedPartial = newBlobId();
      const freshPartial = newBlobId();
      const { storage } = janitor;
      for (const blobId of [orphan, live, leased]) await storage.put(blobId, randomBytes(2048), { ageMs: HOUR });
      await storage.put('stray.tmp', randomBytes(2048), { ageMs: HOUR });
      await storage.put(youngOrphan, randomBytes(2048));
      for (const blobId of [stalePartial, leasedPartial]) await storage.putPartial(blobId, randomBytes(2048), { ageMs: HOUR });
      await storage.putPartial(freshPartial, randomBytes(2048));
      await janitor.redis.zadd(janitor.keys.blob(live), Date.now() + 60_000, 'live');
      // A running download of a burned file, and a long upload still being written (an s3 multipart
      // upload keeps its start time however long it runs): their leases keep them.
      await janitor.redis.zadd(janitor.keys.blob(leased), Date.now() + 60_000, 'a-download-lease');
      await janitor.redis.zadd(janitor.keys.blob(leasedPartial), Date.now() + 60_000, 'an-upload-lease');
      // A lease that ended protects nothing.
      await janitor.redis.zadd(janitor.keys.blob(stalePartial), Date.now() - 1, 'an-ended-lease');

      await janitor.finished(await janitor.enqueue('sweep', { trigger: 'manual', requestedAt: Date.now() }));

      expect(await storage.has(orphan)).toBe(false);
      expect((await storage.names()).filter((name) => name.endsWith('stray.tmp'))).toEqual([]);
      expect(await storage.has(live)).toBe(true);
      expect(await storage.has(leased)).toBe(true);
      expect(await storage.has(youngOrphan)).toBe(true);
      // Unfinished uploads are swept where the store lists them (fs, most S3 stores; s3rver lists none,
      // so its sweep neither sees nor counts them).
      const partialsListed = await storage.partialsListed();
      const partials = partialsListed ? 1 : 0;
      expect(await storage.hasPartial(stalePartial)).toBe(!partialsListed);
      expect(await storage.hasPartial(leasedPartial)).toBe(true);
      expect(await storage.hasPartial(freshPartial)).toBe(true);
      // The blob the expire test kept (young, live record) is scanned too.
      const swept = linesOf('orphan_swept', worker).filter((l) => l.trigger === 'manual');
      expect(swept).toEqual([
        expect.objectContaining({
          level: 'info',
          shredded: 2 + partials,
          failed: 0,
          kept_live: 1,
          kept_leased: 1 + partials,
          kept_young: 2 + partials,
          scanned: 6 + 3 * partials,
        }),
      ]);
    });

    it('runs every manual sweep, even two within the history of completed jobs', async () => {
      const first = await janitor.enqueue('sweep', { trigger: 'manual', requestedAt: Date.now() });
      await janitor.finished(first);
      const second = await janitor.enqueue('sweep', { trigger: 'manual', requestedAt: Date.now() + 1 });
      expect(second).not.toBe(first);
      await janitor.finished(second);
      expect(await (await janitor.queue.queue.getJob(second))?.getState()).toBe('completed');
    });

    it('fails a job with an invalid payload at once, without retrying, and logs job_failed without the payload', async () => {
      await janitor.queue.queue.add('shred', { blobId: '../../etc/passwd', reason: 'deleted' }, { jobId: 'shred-invalid' });

      await expect(janitor.finished('shred-invalid')).rejects.toThrow(/invalid payload: blobId/);

      const job = await janitor.queue.queue.getJob('shred-invalid');
      expect(job?.attemptsMade).toBe(1);
      await waitForLogs([worker], (lines) => lines.some((l) => l.event === 'job_failed'));
      expect(linesOf('job_failed', worker)).toEqual([
        expect.objectContaining({ level: 'error', job: 'shred', attempt: 1, will_retry: false, reason: 'invalid payload: blobId' }),
      ]);
      expect(worker.stdout()).not.toContain('passwd');
    });
  });

  describe('its life', () => {
    let janitor: Janitor;
    beforeAll(async () => {
      janitor = await createJanitor();
    });
    afterAll(async () => {
      await janitor.close();
    });

    it('lets jobs wait while no worker runs, and works through the backlog when one starts', async () => {
      const first = janitor.startWorker();
      await first.waitForEvent('worker_started');
      first.child.kill('SIGTERM');
      expect((await first.exited).code).toBe(0);

      const blobIds = Array.from({ length: 5 }, newBlobId);
      for (const blobId of blobIds) await janitor.storage.put(blobId, randomBytes(10_000));
      const jobs = [];
      for (const blobId of blobIds) jobs.push(await janitor.enqueue('shred', { blobId, reason: 'burned' }));
      expect((await janitor.queue.queue.getJobCounts('waiting')).waiting).toBeGreaterThanOrEqual(5);
      for (const blobId of blobIds) expect(await janitor.storage.has(blobId)).toBe(true);

      const second = janitor.startWorker();
      await Promise.all(jobs.map((id) => janitor.finished(id)));
      for (const blobId of blobIds) expect(await janitor.storage.has(blobId)).toBe(false);
      second.child.kill('SIGTERM');
      expect((await second.exited).code).toBe(0);
    });
  });

  it('runs each sweep tick once, and one startup sweep, with two worker processes', async () => {
    const janitor = await createJanitor();
    try {
      // 0.05 minutes: a tick every 3 seconds.
      const replicas = [
        janitor.startWorker({ CLEANUP_INTERVAL_MINUTES: '0.05' }),
        janitor.startWorker({ CLEANUP_INTERVAL_MINUTES: '0.05' }),
      ];
      const sweepLines = (lines: Line[]) => lines.filter((l) => l.event === 'orphan_swept' || l.event === 'sweep_skipped');
      const ticks = (lines: Line[]) => sweepLines(lines).filter((l) => l.trigger === 'schedule');
      await waitForLogs(replicas, (lines) => ticks(lines).length >= 4, 30_000);

      const lines = logLines(...replicas);
      const tickIds = ticks(lines).map((l) => l.job_id);
      expect(tickIds.every((id) => typeof id === 'string' && id.startsWith('repeat:sweep-schedule:'))).toBe(true);
      expect(new Set(tickIds).size).toBe(tickIds.length); // no tick handled twice
      expect(sweepLines(lines).filter((l) => l.trigger === 'startup')).toHaveLength(1);
      // Both replicas were up and taking work from the same queue.
      for (const replica of replicas) expect(linesOf('worker_started', replica)).toHaveLength(1);
    } finally {
      await janitor.close();
    }
  });
});
