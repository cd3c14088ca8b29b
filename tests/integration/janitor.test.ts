import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { jobIds, type JobName, type JobPayload } from '../../app/jobs/catalogue.js';
import { createJanitorQueue, type JanitorQueue } from '../../app/jobs/enqueue.js';
import { redisKeys, type RedisKeys } from '../../app/shared/redis-keys.js';
import { testEnv, uniquePrefix } from '../helpers/app.js';
import { isAlive, runTs, type RunningProcess } from '../helpers/processes.js';

const MiB = 1024 * 1024;
type Line = Record<string, unknown> & { event: string };

/** One test's world: its own prefix, queue, directories and worker processes. */
interface Janitor {
  dir: string;
  keys: RedisKeys;
  redis: Redis;
  queue: JanitorQueue;
  events: QueueEvents;
  blobPath(blobId: string): string;
  partialPath(blobId: string): string;
  startWorker(env?: Record<string, string>): RunningProcess;
  enqueue<N extends JobName>(name: N, payload: JobPayload<N>, options?: { delayMs?: number }): Promise<string>;
  /** Resolves when the job completes; rejects with its reason when it fails for good. */
  finished(jobId: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const workers: RunningProcess[] = [];

async function createJanitor(): Promise<Janitor> {
  const redisUrl = inject('redisUrl');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-janitor-'));
  const prefix = uniquePrefix();
  const keys = redisKeys(prefix);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = createJanitorQueue(redis, keys.queuePrefix());
  const events = new QueueEvents(queue.queue.name, { connection: new Redis(redisUrl, { maxRetriesPerRequest: null }), prefix: keys.queuePrefix() });
  await events.waitUntilReady();
  const env = testEnv(dir, prefix, redisUrl, { LOG_LEVEL: 'debug' });
  await mkdir(env.STORAGE_PATH!, { recursive: true });
  await mkdir(env.TEMP_PATH!, { recursive: true });
  return {
    dir,
    keys,
    redis,
    queue,
    events,
    blobPath: (blobId) => path.join(env.STORAGE_PATH!, blobId),
    partialPath: (blobId) => path.join(env.TEMP_PATH!, `${blobId}.partial`),
    startWorker: (extra = {}) => {
      const worker = runTs('workers/main.ts', { ...env, ...extra });
      workers.push(worker);
      return worker;
    },
    enqueue: async (name, payload, options) => {
      await queue.enqueue(name, payload, options);
      return (jobIds[name] as (p: typeof payload) => string)(payload);
    },
    finished: async (jobId, timeoutMs = 20_000) => {
      const job = await queue.queue.getJob(jobId);
      if (!job) throw new Error(`no job ${jobId}`);
      await job.waitUntilFinished(events, timeoutMs);
    },
    close: async () => {
      const connection = await events.client;
      await events.close();
      connection.disconnect();
      await queue.close();
      redis.disconnect();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function newBlobId(): string {
  return randomBytes(24).toString('base64url'); // 32 chars, as the API makes them
}

async function exists(filePath: string): Promise<boolean> {
  return stat(filePath).then(
    () => true,
    () => false,
  );
}

async function makeOld(filePath: string): Promise<void> {
  const anHourAgo = new Date(Date.now() - 3_600_000);
  await utimes(filePath, anHourAgo, anHourAgo);
}

function logLines(...procs: RunningProcess[]): Line[] {
  return procs.flatMap((p) =>
    p
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Line];
        } catch {
          return []; // the last line may still be arriving
        }
      }),
  );
}

function linesOf(event: string, ...procs: RunningProcess[]): Line[] {
  return logLines(...procs).filter((l) => l.event === event);
}

/** Waits until the processes' combined output satisfies `done`, checking on each chunk they write. */
function waitForLogs(procs: RunningProcess[], done: (lines: Line[]) => boolean, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!done(logLines(...procs))) return;
      cleanup();
      resolve();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`log condition not met within ${timeoutMs} ms; stdout: ${procs.map((p) => p.stdout().slice(-3000)).join('\n---\n')}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      for (const p of procs) p.child.stdout!.off('data', check);
    };
    for (const p of procs) p.child.stdout!.on('data', check);
    check();
  });
}

/** The startup sweep and the scheduler's first tick, done (or one skipped for the other). */
function initialSweepsDone(worker: RunningProcess): Promise<void> {
  return waitForLogs([worker], (lines) => lines.filter((l) => l.event === 'orphan_swept' || l.event === 'sweep_skipped').length >= 2);
}

afterEach(async () => {
  for (const worker of workers.splice(0)) {
    if (worker.child.exitCode === null && worker.child.signalCode === null && isAlive(worker.child.pid!)) {
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
  }
});

describe('the janitor worker', () => {
  describe('its jobs', () => {
    let janitor: Janitor;
    let worker: RunningProcess;

    beforeAll(async () => {
      janitor = await createJanitor();
      worker = runTs('workers/main.ts', testEnv(janitor.dir, janitor.keys.prefix, inject('redisUrl'), { LOG_LEVEL: 'debug' }));
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
      await writeFile(janitor.blobPath(blobId), randomBytes(64 * 1024));
      await writeFile(janitor.partialPath(blobId), randomBytes(1000));
      const before = linesOf('blob_shredded', worker).length;

      await janitor.finished(await janitor.enqueue('shred', { blobId, reason: 'burned' }));

      expect(await exists(janitor.blobPath(blobId))).toBe(false);
      expect(await exists(janitor.partialPath(blobId))).toBe(false);
      const shredded = linesOf('blob_shredded', worker).slice(before);
      expect(shredded).toEqual([
        expect.objectContaining({ level: 'info', service: 'worker', kind: 'blob', size: 64 * 1024, passes: 1, duration_ms: expect.any(Number), reason: 'burned' }),
        expect.objectContaining({ kind: 'partial', size: 1000, passes: 1 }),
      ]);
      expect(worker.stdout()).not.toContain(blobId);
    });

    it('treats a blob that is already gone as shredded (the job is idempotent)', async () => {
      const blobId = newBlobId();
      await janitor.finished(await janitor.enqueue('shred', { blobId, reason: 'deleted' }));
      const job = await janitor.queue.queue.getJob(jobIds.shred({ blobId, reason: 'deleted' }));
      expect(await job?.getState()).toBe('completed');
    });

    it('overwrites in place: a descriptor opened before the shred reads new random bytes, not the old ones', async () => {
      const blobId = newBlobId();
      const original = randomBytes(3 * MiB);
      await writeFile(janitor.blobPath(blobId), original);
      const before = await open(janitor.blobPath(blobId), 'r');
      try {
        await janitor.finished(await janitor.enqueue('shred', { blobId, reason: 'deleted' }));
        expect(await exists(janitor.blobPath(blobId))).toBe(false);

        // The unlinked inode lives on while we hold it open: it has the same size and other bytes.
        const after = Buffer.alloc(original.length);
        const { bytesRead } = await before.read(after, 0, after.length, 0);
        expect(bytesRead).toBe(original.length);
        let same = 0;
        for (let i = 0; i < original.length; i++) if (after[i] === original[i]) same++;
        expect(same / original.length).toBeLessThan(0.01); // random vs random: about 1/256
      } finally {
        await before.close();
      }
    });

    it('shreds an expired blob whose record is gone, within seconds of the expiry, and logs file_expired', async () => {
      const blobId = newBlobId();
      await writeFile(janitor.blobPath(blobId), randomBytes(5000));
      const before = linesOf('file_expired', worker).length;

      const jobId = await janitor.enqueue('expire', { blobId }, { delayMs: 500 });
      expect(await (await janitor.queue.queue.getJob(jobId))?.getState()).toBe('delayed');
      await janitor.finished(jobId, 5_000);

      expect(await exists(janitor.blobPath(blobId))).toBe(false);
      expect(linesOf('file_expired', worker).slice(before)).toEqual([expect.objectContaining({ level: 'info', size: 5000 })]);
    });

    it('keeps a blob whose record is still live when its expire job runs, and runs the job again at the expiry', async () => {
      const blobId = newBlobId();
      await writeFile(janitor.blobPath(blobId), randomBytes(5000));
      const expires = Date.now() + 60_000;
      await janitor.redis.zadd(janitor.keys.blob(blobId), expires, 'live');
      const since = worker.mark();

      const jobId = await janitor.enqueue('expire', { blobId });
      const deferred = await worker.waitForEvent('destroy_deferred', 10_000, { since });

      expect(deferred).toMatchObject({ reason: 'expired', until: expires });
      expect(await (await janitor.queue.queue.getJob(jobId))?.getState()).toBe('delayed');
      expect(await exists(janitor.blobPath(blobId))).toBe(true);
    });

    it('sweeps old orphans, unknown files and stale partials; keeps live blobs, leased blobs and partials, and fresh partials', async () => {
      const orphan = newBlobId();
      const live = newBlobId();
      const leased = newBlobId();
      const youngOrphan = newBlobId();
      const stalePartial = newBlobId();
      const leasedPartial = newBlobId();
      const freshPartial = newBlobId();
      const unknown = path.join(path.dirname(janitor.blobPath(orphan)), 'stray.tmp');
      const old = [janitor.blobPath(orphan), janitor.blobPath(live), janitor.blobPath(leased), janitor.partialPath(stalePartial), janitor.partialPath(leasedPartial), unknown];
      for (const file of [...old, janitor.blobPath(youngOrphan), janitor.partialPath(freshPartial)]) await writeFile(file, randomBytes(2048));
      for (const file of old) await makeOld(file);
      await janitor.redis.zadd(janitor.keys.blob(live), Date.now() + 60_000, 'live');
      // A running download of a burned file, and a long upload still being written (an s3 multipart
      // upload keeps its start time however long it runs): their leases keep them.
      await janitor.redis.zadd(janitor.keys.blob(leased), Date.now() + 60_000, 'a-download-lease');
      await janitor.redis.zadd(janitor.keys.blob(leasedPartial), Date.now() + 60_000, 'an-upload-lease');
      // A lease that ended protects nothing.
      await janitor.redis.zadd(janitor.keys.blob(stalePartial), Date.now() - 1, 'an-ended-lease');

      await janitor.finished(await janitor.enqueue('sweep', { trigger: 'manual', requestedAt: Date.now() }));

      expect(await exists(janitor.blobPath(orphan))).toBe(false);
      expect(await exists(unknown)).toBe(false);
      expect(await exists(janitor.partialPath(stalePartial))).toBe(false);
      expect(await exists(janitor.blobPath(live))).toBe(true);
      expect(await exists(janitor.blobPath(leased))).toBe(true);
      expect(await exists(janitor.partialPath(leasedPartial))).toBe(true);
      expect(await exists(janitor.blobPath(youngOrphan))).toBe(true);
      expect(await exists(janitor.partialPath(freshPartial))).toBe(true);
      // The blob the expire test kept (young, live record) is scanned too.
      const swept = linesOf('orphan_swept', worker).filter((l) => l.trigger === 'manual');
      expect(swept).toEqual([expect.objectContaining({ level: 'info', shredded: 3, failed: 0, kept_live: 1, kept_leased: 2, kept_young: 3, scanned: 9 })]);
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
      expect(linesOf('job_failed', worker)).toEqual([expect.objectContaining({ level: 'error', job: 'shred', attempt: 1, will_retry: false, reason: 'invalid payload: blobId' })]);
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
      for (const blobId of blobIds) await writeFile(janitor.blobPath(blobId), randomBytes(10_000));
      const jobs = [];
      for (const blobId of blobIds) jobs.push(await janitor.enqueue('shred', { blobId, reason: 'burned' }));
      expect((await janitor.queue.queue.getJobCounts('waiting')).waiting).toBeGreaterThanOrEqual(5);
      for (const blobId of blobIds) expect(await exists(janitor.blobPath(blobId))).toBe(true);

      const second = janitor.startWorker();
      await Promise.all(jobs.map((id) => janitor.finished(id)));
      for (const blobId of blobIds) expect(await exists(janitor.blobPath(blobId))).toBe(false);
      second.child.kill('SIGTERM');
      expect((await second.exited).code).toBe(0);
    });

    it('lets the active shred finish on SIGTERM, then exits 0', async () => {
      const blobId = newBlobId();
      await writeFile(janitor.blobPath(blobId), '');
      await truncate(janitor.blobPath(blobId), 300 * MiB);
      const worker = janitor.startWorker({ SECURE_SHRED_PASSES: '3' });
      await worker.waitForEvent('worker_started');
      const jobId = await janitor.enqueue('shred', { blobId, reason: 'deleted' });

      await waitForLogs([worker], (lines) => lines.some((l) => l.event === 'shred_started' && l.size === 300 * MiB));
      worker.child.kill('SIGTERM');
      expect((await worker.exited).code).toBe(0);

      expect(await exists(janitor.blobPath(blobId))).toBe(false);
      expect(await (await janitor.queue.queue.getJob(jobId))?.getState()).toBe('completed');
      const events = logLines(worker).map((l) => l.event);
      expect(events.indexOf('blob_shredded')).toBeGreaterThan(events.indexOf('shutdown_started'));
      expect(events.indexOf('blob_shredded')).toBeLessThan(events.indexOf('shutdown_completed'));
    });

    it('runs a shred again after the worker is killed (-9) in the middle of it, and the file is gone', async () => {
      const blobId = newBlobId();
      await writeFile(janitor.blobPath(blobId), '');
      await truncate(janitor.blobPath(blobId), 300 * MiB);
      const first = janitor.startWorker({ SECURE_SHRED_PASSES: '3' });
      await first.waitForEvent('worker_started');
      const jobId = await janitor.enqueue('shred', { blobId, reason: 'burned' });

      await waitForLogs([first], (lines) => lines.some((l) => l.event === 'shred_started' && l.size === 300 * MiB));
      first.child.kill('SIGKILL');
      await first.exited;
      expect(await exists(janitor.blobPath(blobId))).toBe(true);
      expect(await (await janitor.queue.queue.getJob(jobId))?.getState()).toBe('active'); // stalled, its lock still held

      const second = janitor.startWorker({ SECURE_SHRED_PASSES: '1' });
      await janitor.finished(jobId, 45_000);
      expect(await exists(janitor.blobPath(blobId))).toBe(false);
      expect(linesOf('blob_shredded', second)).toEqual([expect.objectContaining({ size: 300 * MiB, reason: 'burned' })]);
      second.child.kill('SIGTERM');
      expect((await second.exited).code).toBe(0);
    });
  });

  it('runs each sweep tick once, and one startup sweep, with two worker processes', async () => {
    const janitor = await createJanitor();
    try {
      // 0.05 minutes: a tick every 3 seconds.
      const replicas = [janitor.startWorker({ CLEANUP_INTERVAL_MINUTES: '0.05' }), janitor.startWorker({ CLEANUP_INTERVAL_MINUTES: '0.05' })];
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
