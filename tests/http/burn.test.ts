import { createHash, randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobGuard } from '../../app/blobs/blobs.repository.js';
import { JANITOR_QUEUE } from '../../app/jobs/catalogue.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/files.js';

describe('burning a large file on its last download', () => {
  let app: TestApp;
  let redis: Redis;
  let queue: Queue;
  beforeAll(async () => {
    app = await startTestApp({ env: { MAX_FILE_SIZE: String(16 * 1024 * 1024), RESUME_WINDOW_SECONDS: '0' } });
    redis = new Redis(app.config.redisUrl!, { maxRetriesPerRequest: null });
    queue = new Queue(JANITOR_QUEUE, { connection: redis, prefix: app.deps.keys.queuePrefix() });
  });
  afterAll(async () => {
    await queue.close();
    redis.disconnect();
    await app.close();
  });

  const shredJobs = async () => (await queue.getJobs(['waiting', 'active', 'completed', 'delayed'])).filter((j) => j.name === 'shred');

  it('queues the shred at the burn, keeps the bytes leased while they are sent, and frees them at the end', async () => {
    const bytes = randomBytes(8 * 1024 * 1024);
    const up = await fetch(`${app.url}/upload/big.bin`, { method: 'PUT', body: bytes, headers: { Accept: 'application/json' } });
    const { key } = (await up.json()) as { key: string };

    const res = await fetch(`${app.url}/download/${key}`);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    // Mid-download: the record is burned (the key answers 410) and the shred is queued, but the
    // download's lease is the one thing protecting the bytes, so the janitor would wait.
    expect((await fetch(`${app.url}/status/${key}`)).status).toBe(410);
    const [atBurn] = await shredJobs();
    expect(atBurn!.data).toEqual({ blobId: expect.any(String), reason: 'burned', burn: expect.any(String) });
    const guard = createBlobGuard(app.deps.redis, app.deps.keys);
    const during = await guard.protection(atBurn!.data.blobId, Date.now());
    expect(during).toMatchObject({ live: false, leases: 1 });
    expect(during.until).toBeGreaterThan(Date.now());

    const parts: Uint8Array[] = [first.value!];
    for (;;) {
      const next = await reader.read();
      if (next.done) break;
      parts.push(next.value);
    }
    const received = Buffer.concat(parts);
    expect(createHash('sha256').update(received).digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'));
    // When the lease ends nothing protects the blob: a second shred is queued to run now.
    const jobs = await waitFor(shredJobs, (j) => j.length === 2);
    expect(jobs.map((j) => j.data)).toContainEqual({ blobId: atBurn!.data.blobId, reason: 'burned', lease: expect.any(String) });
    expect(await guard.protection(atBurn!.data.blobId, Date.now())).toEqual({ live: false, leases: 0, until: null });
  });
});
