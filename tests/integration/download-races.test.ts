/**
 * Downloads at the edges of their life (SPEC §10.1, §10.2), against real Redis and a real janitor
 * worker: a failure between the claim and the first byte, a delete while a download starts, a resume
 * racing a delete and its shred, and a burn that follows a refunded one. Each race is made
 * deterministic by holding or failing one step of the real app (a script call, a store read).
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { destroyUnlessProtected } from '../../app/blobs/blobs.usecases.js';
import { createBlobGuard } from '../../app/blobs/blobs.repository.js';
import { createSilentLogger } from '../../app/shared/logger.js';
import { startTestApp, useAppStack, type TestApp } from '../helpers/app.js';
import { expectError, redisKeysOf, uploadOk, waitFor, type UploadAnswer } from '../helpers/files.js';
import { onNextScriptCall, holdNextRead, failNextRead } from '../helpers/interpose.js';

async function upload(
  app: TestApp,
  fields: Record<string, string>,
  size = 300_000,
): Promise<UploadAnswer & { blobId: string; bytes: Buffer }> {
  const before = new Set(await app.storage.blobIds());
  const bytes = randomBytes(size);
  const answer = await uploadOk(app, bytes, 'race.bin', fields);
  const added = (await app.storage.blobIds()).filter((id) => !before.has(id));
  expect(added).toHaveLength(1);
  return { ...answer, blobId: added[0]!, bytes };
}

const download = (url: string, headers: Record<string, string> = {}) => fetch(url, { headers: { Accept: '*/*', ...headers } });
const remove = (up: UploadAnswer) => fetch(up.delete_url, { method: 'DELETE', headers: { 'X-Delete-Token': up.delete_token } });

/** What protects a blob, member by member (live, resume, one per lease). */
async function members(app: TestApp, blobId: string): Promise<string[]> {
  return (await app.deps.redis.zrange(app.deps.keys.blob(blobId), 0, -1)).sort();
}
const leasesOf = async (app: TestApp, blobId: string) => (await members(app, blobId)).filter((m) => m !== 'live' && m !== 'resume');

async function remainingUses(app: TestApp, key: string): Promise<number> {
  const res = await fetch(`${app.url}/status/${key}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { remaining_uses: number }).remaining_uses;
}

/** Downloads the file once to its end and waits for that download's lease to end: its ETag. */
async function downloadedOnce(app: TestApp, up: { download_url: string; blobId: string }): Promise<string> {
  const first = await download(up.download_url);
  const etag = first.headers.get('etag')!;
  expect(etag).toMatch(/^"r1\./);
  await first.arrayBuffer();
  await waitFor(
    () => leasesOf(app, up.blobId),
    (leases) => leases.length === 0,
    5_000,
    "the first download's lease to end",
  );
  return etag;
}

describe('a download that fails between its claim and its first byte', () => {
  const running = useAppStack();

  it('spends nothing and leaves no lease and no resume record when the lookup slot cannot be settled', async () => {
    const { app } = running;
    const up = await upload(app, { uses: '1' });
    // The abuse guard's settle is a Redis script: a connection lost right then fails it.
    onNextScriptCall(app, 'cbxSettle', () => Promise.reject(new Error('Connection is closed.')));

    await expectError(await download(up.download_url), 503, 'SERVICE_UNAVAILABLE');

    expect(await remainingUses(app, up.key)).toBe(1);
    expect(await leasesOf(app, up.blobId)).toEqual([]);
    // The client never saw the ETag: no wrapped copy of the data key is left for the window.
    expect(await redisKeysOf(app, 'resume:*')).toEqual([]);
    // And the file downloads as if nothing had happened.
    const res = await download(up.download_url);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(up.bytes)).toBe(true);
  });

  it('leaves no lease when a resume cannot settle its lookup slot', async () => {
    const { app } = running;
    const up = await upload(app, { uses: '2' });
    const etag = await downloadedOnce(app, up);
    onNextScriptCall(app, 'cbxSettle', () => Promise.reject(new Error('Connection is closed.')));

    await expectError(await download(up.download_url, { Range: 'bytes=10-', 'If-Range': etag }), 503, 'SERVICE_UNAVAILABLE');

    expect(await leasesOf(app, up.blobId)).toEqual([]);
    expect(await remainingUses(app, up.key)).toBe(1);
  });
});

describe("a resume racing the sender's delete and its shred", () => {
  const running = useAppStack();

  it('answers 410 deleted, never reading the bytes being destroyed, and leaves no lease', async () => {
    const { app } = running;
    const up = await upload(app, { uses: '2' });
    const etag = await downloadedOnce(app, up);
    const blobs = {
      store: app.deps.store,
      guard: createBlobGuard(app.deps.redis, app.deps.keys),
      log: createSilentLogger(),
      now: Date.now,
    };
    // Right after the resume has seen the file live, the sender deletes it and the janitor's shred
    // finds nothing protecting the blob (the delete dropped its resume window) and destroys it.
    let destroyed: string | undefined;
    onNextScriptCall(app, 'cbxPeek', async (real, args) => {
      const seen = await real(...args);
      expect((await remove(up)).status).toBe(204);
      destroyed = (await destroyUnlessProtected(blobs, up.blobId, 'deleted')).kind;
      return seen;
    });

    const resumed = await download(up.download_url, { Range: 'bytes=10-', 'If-Range': etag });

    const body = await expectError(resumed, 410, 'FILE_GONE');
    expect(body.error.reason).toBe('deleted');
    expect(destroyed).toBe('destroyed');
    expect(await app.storage.has(up.blobId)).toBe(false);
    expect(await members(app, up.blobId)).toEqual([]);
  });
});

describe('a download claimed before the sender deletes the file', () => {
  const running = useAppStack({ worker: true });

  it('is served to its end with no resume capability, and the bytes are shredded when it ends, not after the window', async () => {
    const { app } = running;
    const up = await upload(app, { uses: '2' });
    const read = holdNextRead(app.deps.store);
    const pending = download(up.download_url);
    await read.reached; // claimed and leased; its first chunk not yet read
    expect((await remove(up)).status).toBe(204);
    read.open();

    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBeNull();
    expect(res.headers.get('accept-ranges')).toBe('none');
    expect(Buffer.from(await res.arrayBuffer()).equals(up.bytes)).toBe(true);

    expect(await app.deps.redis.zscore(app.deps.keys.blob(up.blobId), 'resume')).toBeNull();
    expect(await redisKeysOf(app, 'resume:*')).toEqual([]);
    // RESUME_WINDOW_SECONDS is 900 here: only the download's own lease held the bytes.
    await waitFor(
      () => app.storage.has(up.blobId),
      (present) => !present,
      10_000,
      'the blob to be shredded',
    );
  });
});

describe('a burn after a burn that was refunded', () => {
  const running = useAppStack({ env: { RESUME_WINDOW_SECONDS: '1' }, worker: true });

  it("is shredded when its own window ends, though the first burn's shred put itself back until the expiry", async () => {
    const { app, worker } = running;
    const up = await upload(app, { uses: '1', expiry: '1' });
    const since = worker.mark();
    failNextRead(app.deps.store);
    const failed = await download(up.download_url);
    expect(failed.status).toBeGreaterThanOrEqual(500);
    await failed.arrayBuffer();
    expect(await remainingUses(app, up.key)).toBe(1);
    // The first burn's shred ran after its window and found the refunded record live: it waits for the expiry.
    const deferred = await worker.waitForEvent('destroy_deferred', 10_000, { since, where: (line) => line.reason === 'burned' });
    expect(deferred.until).toBe(Date.parse(up.expiry));

    const res = await download(up.download_url);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(up.bytes)).toBe(true);

    // The second burn's shred is due 2 s after it (window 1 s + margin 1 s); the expiry is a minute away.
    await waitFor(
      () => app.storage.has(up.blobId),
      (present) => !present,
      15_000,
      'the blob to be shredded after the second window',
    );
    await worker.waitForEvent('blob_shredded', 5_000, { since, where: (line) => line.reason === 'burned' && line.kind === 'blob' });
    expect(Date.parse(up.expiry) - Date.now()).toBeGreaterThan(30_000);
  });
});

describe('a store that fails or stalls before the first byte (SPEC §3: 503, never a hang)', () => {
  const fault: { next: 'io-error' | 'stall' | 'no-answer' | null } = { next: null };
  const running = { app: undefined as unknown as TestApp };
  beforeAll(async () => {
    running.app = await startTestApp({
      env: { UPLOAD_STALL_SECONDS: '1' },
      wrapStore: (store) => ({
        ...store,
        read(blobId, range) {
          const what = fault.next;
          fault.next = null;
          if (what === 'io-error')
            return Promise.reject(Object.assign(new Error('EIO: i/o error, open'), { code: 'EIO', syscall: 'open' }));
          if (what === 'stall') return Promise.resolve(new Readable({ read: () => undefined }));
          if (what === 'no-answer') return new Promise<Readable>(() => undefined);
          return store.read(blobId, range);
        },
      }),
    });
  });
  afterAll(async () => {
    await running.app.close();
  });

  it.each(['io-error', 'stall', 'no-answer'] as const)('answers 503 for a read that meets %s, and spends nothing', async (what) => {
    const { app } = running;
    const up = await upload(app, { uses: '1' });
    fault.next = what;
    const res = await download(up.download_url);
    await expectError(res, 503, 'SERVICE_UNAVAILABLE');
    expect(res.headers.get('retry-after')).not.toBeNull();
    expect(await remainingUses(app, up.key)).toBe(1);
    expect(await leasesOf(app, up.blobId)).toEqual([]);
    const again = await download(up.download_url);
    expect(again.status).toBe(200);
    expect(Buffer.from(await again.arrayBuffer()).equals(up.bytes)).toBe(true);
  });

  it('answers 503 for a resume whose store answers its header read and then sends nothing, and leaves no lease', async () => {
    const { app } = running;
    const up = await upload(app, { uses: '2' });
    const etag = await downloadedOnce(app, up);
    fault.next = 'stall'; // the resume's first read is the file's 42-byte header
    await expectError(await download(up.download_url, { Range: 'bytes=10-', 'If-Range': etag }), 503, 'SERVICE_UNAVAILABLE');
    expect(await leasesOf(app, up.blobId)).toEqual([]);
    expect(await remainingUses(app, up.key)).toBe(1);
    const resumed = await download(up.download_url, { Range: 'bytes=10-', 'If-Range': etag });
    expect(resumed.status).toBe(206);
    expect(Buffer.from(await resumed.arrayBuffer()).equals(up.bytes.subarray(10))).toBe(true);
  });
});
