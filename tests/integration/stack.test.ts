import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startTestApp, testEnv, type TestApp } from '../helpers/app.js';
import { runTs, type RunningProcess } from '../helpers/processes.js';
import { waitFor } from '../helpers/files.js';

/** The API in-process and a real janitor process sharing its Redis prefix and storage. */
describe('the API and the janitor together', () => {
  let app: TestApp;
  let worker: RunningProcess;
  const startWorker = () =>
    runTs(
      'workers/main.ts',
      testEnv(app.dir, app.config.redisPrefix, inject('redisUrl'), {
        LOG_LEVEL: 'debug',
        ORPHAN_AGE_MINUTES: '60',
        RESUME_WINDOW_SECONDS: '0',
      }),
    );

  beforeAll(async () => {
    // Expiries of a second or so, so the expiry test does not wait a minute.
    // No resume window: a burned blob is shredded as soon as its download ends.
    app = await startTestApp({ env: { MIN_EXPIRY_MINUTES: '0.01', RESUME_WINDOW_SECONDS: '0' } });
    worker = startWorker();
    await worker.waitForEvent('worker_started');
  });
  afterAll(async () => {
    worker.child.kill('SIGTERM');
    await worker.exited;
    await app.close();
  });

  const blobs = () => app.storage.blobIds();
  const gone = (blob: string | undefined, timeoutMs: number) =>
    waitFor(
      () => app.storage.has(blob!),
      (exists) => !exists,
      timeoutMs,
      'the blob to be shredded',
    );
  const upload = async (query = '') => {
    const res = await fetch(`${app.url}/upload/f.txt${query}`, {
      method: 'PUT',
      body: 'janitor end to end',
      headers: { Accept: 'application/json' },
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { key: string; delete_token: string };
  };

  it('shreds the blob within seconds of the last download', async () => {
    const before = new Set(await blobs());
    const { key } = await upload();
    const [blob] = (await blobs()).filter((b) => !before.has(b));
    expect(blob).toBeDefined();
    expect(await (await fetch(`${app.url}/download/${key}`)).text()).toBe('janitor end to end');
    await gone(blob, 10_000);
  });

  it('shreds the blob within seconds of a delete', async () => {
    const before = new Set(await blobs());
    const { key, delete_token } = await upload();
    const [blob] = (await blobs()).filter((b) => !before.has(b));
    expect((await fetch(`${app.url}/files/${key}`, { method: 'DELETE', headers: { 'X-Delete-Token': delete_token } })).status).toBe(204);
    await gone(blob, 10_000);
  });

  it('shreds an expired file within seconds of its expiry, and its key answers 410 expired', async () => {
    const before = new Set(await blobs());
    const { key } = await upload('?expiry=0.02');
    const [blob] = (await blobs()).filter((b) => !before.has(b));
    await gone(blob, 15_000);
    const res = await fetch(`${app.url}/status/${key}`);
    expect(res.status).toBe(410);
    expect(await res.json()).toMatchObject({ error: { code: 'FILE_GONE', reason: 'expired' } });
  });

  it('keeps serving with the worker stopped (degraded), and does the backlog when it returns', async () => {
    worker.child.kill('SIGTERM');
    expect((await worker.exited).code).toBe(0);
    const health = await fetch(`${app.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'degraded', services: { scheduler: 'offline' } });

    const before = new Set(await blobs());
    const { key } = await upload();
    const [blob] = (await blobs()).filter((b) => !before.has(b));
    expect((await fetch(`${app.url}/download/${key}`)).status).toBe(200);
    expect(await app.storage.has(blob!)).toBe(true); // nobody to shred it yet

    worker = startWorker();
    await worker.waitForEvent('worker_started');
    await gone(blob, 10_000);
    const after = await fetch(`${app.url}/health`);
    expect(await after.json()).toMatchObject({ status: 'healthy', services: { scheduler: 'online' } });
  });
});
