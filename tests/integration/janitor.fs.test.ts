import { randomBytes } from 'node:crypto';
import { open, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createJanitor,
  initialSweepsDone,
  killWorkersAfterEach,
  linesOf,
  logLines,
  newBlobId,
  waitForLogs,
  type Janitor,
} from '../helpers/janitor.js';
import { runTs, type RunningProcess } from '../helpers/processes.js';

// fs only: these watch the fs engine's shred itself, an overwrite in place (SECURE_SHRED_PASSES) that
// an open descriptor can observe and that takes seconds on a big file. An s3 shred is one DeleteObject
// after the crypto-shred: there is nothing to observe through a descriptor, and nothing long enough
// to interrupt. The janitor's other behaviour runs on both engines in janitor.test.ts.

const MiB = 1024 * 1024;

killWorkersAfterEach();

const exists = (file: string) =>
  stat(file).then(
    () => true,
    () => false,
  );

describe('the janitor worker on the fs engine', () => {
  let janitor: Janitor;
  const blobPath = (blobId: string) => path.join(janitor.env.STORAGE_PATH!, blobId);
  beforeAll(async () => {
    janitor = await createJanitor();
  });
  afterAll(async () => {
    await janitor.close();
  });

  it('overwrites in place: a descriptor opened before the shred reads new random bytes, not the old ones', async () => {
    const worker: RunningProcess = runTs('workers/main.ts', janitor.env);
    try {
      await worker.waitForEvent('worker_started');
      await initialSweepsDone(worker);
      const blobId = newBlobId();
      const original = randomBytes(3 * MiB);
      await writeFile(blobPath(blobId), original);
      const before = await open(blobPath(blobId), 'r');
      try {
        await janitor.finished(await janitor.enqueue('shred', { blobId, reason: 'deleted' }));
        expect(await exists(blobPath(blobId))).toBe(false);

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
    } finally {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
  });

  it('lets the active shred finish on SIGTERM, then exits 0', async () => {
    const blobId = newBlobId();
    await writeFile(blobPath(blobId), '');
    await truncate(blobPath(blobId), 300 * MiB);
    const worker = janitor.startWorker({ SECURE_SHRED_PASSES: '3' });
    await worker.waitForEvent('worker_started');
    const jobId = await janitor.enqueue('shred', { blobId, reason: 'deleted' });

    await waitForLogs([worker], (lines) => lines.some((l) => l.event === 'shred_started' && l.size === 300 * MiB));
    worker.child.kill('SIGTERM');
    expect((await worker.exited).code).toBe(0);

    expect(await exists(blobPath(blobId))).toBe(false);
    expect(await (await janitor.queue.queue.getJob(jobId))?.getState()).toBe('completed');
    const events = logLines(worker).map((l) => l.event);
    expect(events.indexOf('blob_shredded')).toBeGreaterThan(events.indexOf('shutdown_started'));
    expect(events.indexOf('blob_shredded')).toBeLessThan(events.indexOf('shutdown_completed'));
  });

  it('runs a shred again after the worker is killed (-9) in the middle of it, and the file is gone', async () => {
    const blobId = newBlobId();
    await writeFile(blobPath(blobId), '');
    await truncate(blobPath(blobId), 300 * MiB);
    const first = janitor.startWorker({ SECURE_SHRED_PASSES: '3' });
    await first.waitForEvent('worker_started');
    const jobId = await janitor.enqueue('shred', { blobId, reason: 'burned' });

    await waitForLogs([first], (lines) => lines.some((l) => l.event === 'shred_started' && l.size === 300 * MiB));
    first.child.kill('SIGKILL');
    await first.exited;
    expect(await exists(blobPath(blobId))).toBe(true);
    expect(await (await janitor.queue.queue.getJob(jobId))?.getState()).toBe('active'); // stalled, its lock still held

    const second = janitor.startWorker({ SECURE_SHRED_PASSES: '1' });
    await janitor.finished(jobId, 45_000);
    expect(await exists(blobPath(blobId))).toBe(false);
    expect(linesOf('blob_shredded', second)).toEqual([expect.objectContaining({ size: 300 * MiB, reason: 'burned' })]);
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });
});
