/**
 * A started download always finishes (SPEC §10.1, issue 13): real worker process, real Redis, the
 * API in-process, and a client that reads slowly — it stops reading after the first bytes and
 * resumes only once the janitor has had its chance to destroy the blob under it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startTestApp, testEnv, type TestApp } from '../helpers/app.js';
import { startSlowDownload, waitFor } from '../helpers/files.js';
import { runTs, type RunningProcess } from '../helpers/processes.js';

const MiB = 1024 * 1024;
// Large enough that loopback socket buffers cannot hold it: a paused client keeps the server mid-stream.
const FILE_BYTES = 24 * MiB;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('a started download always finishes', () => {
  let app: TestApp;
  let worker: RunningProcess;

  beforeAll(async () => {
    // Sweeps every ~1 s of anything older than ~0.6 s, and expiries of a second: the janitor gets
    // every chance to destroy a blob while it is being read.
    // Resume windows off: here the bytes must go as soon as the last download's lease ends (the
    // resume tests cover the window).
    const env = {
      MIN_EXPIRY_MINUTES: '0.01',
      ORPHAN_AGE_MINUTES: '0.01',
      CLEANUP_INTERVAL_MINUTES: '0.02',
      MAX_FILE_SIZE: String(64 * MiB),
      RESUME_WINDOW_SECONDS: '0',
    };
    app = await startTestApp({ env });
    worker = runTs('workers/main.ts', testEnv(app.dir, app.config.redisPrefix, inject('redisUrl'), { ...env, LOG_LEVEL: 'debug' }));
    await worker.waitForEvent('worker_started');
  });
  afterAll(async () => {
    worker.child.kill('SIGTERM');
    await worker.exited;
    await app.close();
  });

  /** Uploads random bytes; returns the key, the bytes and the new blob's id. */
  const upload = async (query: string) => {
    const before = new Set(await app.storage.blobIds());
    const bytes = randomBytes(FILE_BYTES);
    const res = await fetch(`${app.url}/upload/big.bin?${query}`, { method: 'PUT', body: bytes, headers: { Accept: 'application/json' } });
    expect(res.status).toBe(201);
    const { key, delete_token: token } = (await res.json()) as { key: string; delete_token: string };
    const [blob] = (await app.storage.blobIds()).filter((id) => !before.has(id));
    expect(blob).toBeDefined();
    return { key, token, bytes, blob: blob! };
  };
  const statusOf = async (key: string) => {
    const res = await fetch(`${app.url}/status/${key}`);
    return { status: res.status, body: (await res.json()) as { remaining_uses?: number; error?: { reason?: string } } };
  };
  const shreddedSoon = (blob: string) =>
    waitFor(
      () => app.storage.has(blob),
      (present) => !present,
      10_000,
      'the blob to be shredded',
    );

  it('finishes the download that took the last use while sweeps run, then the blob is shredded', async () => {
    const { key, bytes, blob } = await upload('uses=1');
    const download = await startSlowDownload(`${app.url}/download/${key}`);
    expect(download.status).toBe(200);

    // A sweep after the burn found the blob old enough and without a record, and kept it for its lease.
    const since = worker.mark();
    await worker.waitForEvent('orphan_swept', 15_000, { since, where: (line) => Number(line.kept_leased) >= 1 });
    expect(await app.storage.has(blob)).toBe(true);

    const { body, complete } = await download.finish();
    expect(complete).toBe(true);
    expect(sha256(body)).toBe(sha256(bytes));
    expect((await statusOf(key)).body.error?.reason).toBe('burned');
    await shreddedSoon(blob);
  });

  it('finishes a download that runs across the file expiry, then the blob is shredded', async () => {
    const { key, bytes, blob } = await upload('uses=2&expiry=0.02');
    const since = worker.mark();
    const download = await startSlowDownload(`${app.url}/download/${key}`);
    expect(download.status).toBe(200);

    // The expire job ran at the expiry and waits for the lease instead of destroying the bytes.
    await worker.waitForEvent('destroy_deferred', 15_000, { since, where: (line) => line.reason === 'expired' });
    expect((await statusOf(key)).body.error?.reason).toBe('expired');

    const { body, complete } = await download.finish();
    expect(complete).toBe(true);
    expect(sha256(body)).toBe(sha256(bytes));
    await shreddedSoon(blob);
  });

  it('finishes a download running while the sender deletes; new requests get 410 at once', async () => {
    const { key, token, bytes, blob } = await upload('uses=3');
    const since = worker.mark();
    const download = await startSlowDownload(`${app.url}/download/${key}`);
    expect(download.status).toBe(200);

    expect((await fetch(`${app.url}/files/${key}`, { method: 'DELETE', headers: { 'X-Delete-Token': token } })).status).toBe(204);
    expect((await statusOf(key)).body.error?.reason).toBe('deleted');
    const refused = await fetch(`${app.url}/download/${key}`, { headers: { Accept: 'application/octet-stream' } });
    expect(refused.status).toBe(410);
    await worker.waitForEvent('destroy_deferred', 15_000, { since, where: (line) => line.reason === 'deleted' });

    const { body, complete } = await download.finish();
    expect(complete).toBe(true);
    expect(sha256(body)).toBe(sha256(bytes));
    await shreddedSoon(blob);
  });

  it('finishes a slow download of a uses=2 file while a fast one burns it', async () => {
    const { key, bytes, blob } = await upload('uses=2');
    const since = worker.mark();
    const slow = await startSlowDownload(`${app.url}/download/${key}`);
    expect(slow.status).toBe(200);

    const fast = await fetch(`${app.url}/download/${key}`, { headers: { Accept: 'application/octet-stream' } });
    expect(fast.status).toBe(200);
    expect(sha256(Buffer.from(await fast.arrayBuffer()))).toBe(sha256(bytes));
    expect((await statusOf(key)).body.error?.reason).toBe('burned');
    // The fast download's end queued the shred; the slow one's lease makes the janitor wait.
    await worker.waitForEvent('destroy_deferred', 15_000, {
      since,
      where: (line) => line.reason === 'burned' || line.reason === 'released',
    });
    expect(await app.storage.has(blob)).toBe(true);

    const { body, complete } = await slow.finish();
    expect(complete).toBe(true);
    expect(sha256(body)).toBe(sha256(bytes));
    await shreddedSoon(blob);
  });
});
