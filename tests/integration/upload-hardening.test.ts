import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../app/blobs/blob-store.js';
import { newBlobId } from '../../app/blobs/blob-id.js';
import { MIN_PART_SIZE } from '../../app/blobs/s3-options.js';
import { useAppStack, type TestApp } from '../helpers/app.js';
import { expectError, fileKeys, pausedPut, postFile, storedFiles, uploadOk, waitFor } from '../helpers/files.js';
import { startTestS3, type TestS3 } from '../helpers/s3-server.js';

const KB = 1000;
const MiB = 1024 * 1024;

/** What the app holds: blobs and partials in its engine, records and leases in Redis. */
const traceOf = async (app: TestApp) => ({ stored: await storedFiles(app), keys: await fileKeys(app) });

/** Waits until the app holds exactly what it held `before` (a failed upload's clean-up may end after its answer). */
async function expectNothingLeft(app: TestApp, before: { stored: string[]; keys: string[] } = { stored: [], keys: [] }): Promise<void> {
  expect(
    await waitFor(
      () => traceOf(app),
      (now) => now.stored.length === before.stored.length && now.keys.length === before.keys.length,
    ),
  ).toEqual(before);
}

/** A PUT whose body is sent chunked (no Content-Length), in 64 KiB pieces. */
function chunkedPut(app: TestApp, name: string, bytes: Buffer): Promise<Response> {
  const body = Readable.toWeb(Readable.from(pieces(bytes, 64 * 1024))) as ReadableStream<Uint8Array>;
  return fetch(`${app.url}/upload/${name}`, {
    method: 'PUT',
    body,
    duplex: 'half',
    headers: { Accept: 'application/json' },
  } as RequestInit);
}

function* pieces(data: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

describe('MAX_STORAGE_BYTES holds for bodies of unknown length (SPEC §3: 507)', () => {
  const running = useAppStack({ env: { MAX_STORAGE_BYTES: String(1000 * KB) } });

  it('refuses a second multipart upload, and a chunked PUT, that the first one left no room for; nothing of them stays', async () => {
    await uploadOk(running.app, randomBytes(700 * KB), 'first.bin');
    const kept = await traceOf(running.app);
    expect(kept.stored).toHaveLength(1);

    const second = await postFile(running.app, randomBytes(700 * KB), 'second.bin');
    await expectError(second, 507, 'INSUFFICIENT_STORAGE');
    await expectNothingLeft(running.app, kept);

    const chunked = await chunkedPut(running.app, 'third.bin', randomBytes(700 * KB));
    expect(chunked.headers.get('content-length')).not.toBeNull();
    await expectError(chunked, 507, 'INSUFFICIENT_STORAGE');
    await expectNothingLeft(running.app, kept);

    // What still fits is taken.
    await uploadOk(running.app, randomBytes(200 * KB), 'fits.bin');
  });
});

describe('MAX_STORAGE_BYTES holds for uploads running at the same time', () => {
  // Ciphertext each upload has handed its engine: the test lets both bodies go on only once both
  // uploads are well under way, so neither can have finished before the other started.
  const written = new Map<string, number>();
  let bothUnderWay!: () => void;
  const underWay = new Promise<void>((resolve) => (bothUnderWay = resolve));
  const running = useAppStack({
    env: { MAX_STORAGE_BYTES: String(1000 * KB) },
    wrapStore: (store) => ({
      ...store,
      create(blobId) {
        const writer = store.create(blobId);
        const write = writer.stream.write.bind(writer.stream) as (chunk: Buffer, ...rest: unknown[]) => boolean;
        writer.stream.write = ((chunk: Buffer, ...rest: unknown[]) => {
          written.set(blobId, (written.get(blobId) ?? 0) + chunk.length);
          if ([...written.values()].filter((n) => n >= 300 * KB).length >= 2) bothUnderWay();
          return write(chunk, ...rest);
        }) as typeof writer.stream.write;
        return writer;
      },
    }),
  });

  it('lets only what fits through: two 700 KB uploads at once under a 1000 KB quota, one 507 and nothing of it left', async () => {
    const answers = await Promise.all([
      pausedPut(running.app, 'a.bin', randomBytes(700 * KB), { after: 350 * KB, until: underWay }),
      pausedPut(running.app, 'b.bin', randomBytes(700 * KB), { after: 350 * KB, until: underWay }),
    ]);
    expect(answers.map((res) => res.status).sort()).toEqual([201, 507]);
    await expectError(
      answers.find((res) => res.status === 507)!,
      507,
      'INSUFFICIENT_STORAGE',
    );
    expect((await traceOf(running.app)).stored).toHaveLength(1);
  });
});

describe('MAX_STORAGE_BYTES counts a drop once', () => {
  const running = useAppStack({ env: { MAX_STORAGE_BYTES: String(1000 * KB) } });

  // A drop's archive re-contains its first file, whose own blob is discarded once copied in: it must
  // not count against the quota twice (SPEC §10.7: MAX_FILE_SIZE and the quota hold for the drop).
  it("refuses a drop that does not fit, though its first file's blob is discarded while the archive is written", async () => {
    const before = await traceOf(running.app);
    const form = new FormData();
    form.append('file', new Blob([randomBytes(600 * KB)]), 'first.bin');
    form.append('file', new Blob([randomBytes(600 * KB)]), 'second.bin');
    const res = await fetch(`${running.app.url}/upload`, { method: 'POST', body: form, headers: { Accept: 'application/json' } });
    await expectError(res, 507, 'INSUFFICIENT_STORAGE');
    await expectNothingLeft(running.app, before);
  });

  it('takes a drop that fits once, though its first file is stored twice for a moment', async () => {
    const form = new FormData();
    form.append('file', new Blob([randomBytes(600 * KB)]), 'big.bin');
    form.append('file', new Blob(['small\n']), 'small.txt');
    const res = await fetch(`${running.app.url}/upload`, { method: 'POST', body: form, headers: { Accept: 'application/json' } });
    expect(res.status).toBe(201);
    // Only the archive stays: the first file's own blob is discarded once copied in.
    await waitFor(
      () => traceOf(running.app),
      (now) => now.stored.length === 1,
    );
  });
});

const storeFailure = (operation: string) => Object.assign(new Error(`s3 ${operation} failed: socket hang up`), { code: 'ESTORE' });

/**
 * The project's engine behind a fault: writes fail with ESTORE once `failAfter` bytes went through
 * (the partial is the engine's own, so abort() must still remove it), and reads fail with ESTORE.
 */
function faultyStore(store: BlobStore, faults: { failAfter: number; failReads: boolean }): BlobStore {
  return {
    ...store,
    create(blobId) {
      const writer = store.create(blobId);
      let written = 0;
      const stream = new Writable({
        write(chunk: Buffer, _encoding, done) {
          written += chunk.length;
          if (written > faults.failAfter) return done(storeFailure('UploadPart'));
          writer.stream.write(chunk, done);
        },
        final(done) {
          writer.stream.end(done);
        },
      });
      return { stream, commit: () => writer.commit(), abort: () => writer.abort() };
    },
    read(blobId, range) {
      return faults.failReads ? Promise.reject(storeFailure('GetObject')) : store.read(blobId, range);
    },
  };
}

describe('a storage engine that fails mid-upload is a 503, not the client’s fault (SPEC §3)', () => {
  const faults = { failAfter: 300 * 1024, failReads: false };
  const running = useAppStack({ wrapStore: (store) => faultyStore(store, faults) });

  const expectStorageUnavailable = async (res: Response) => {
    await expectError(res, 503, 'SERVICE_UNAVAILABLE');
    expect(res.headers.get('retry-after')).toBe('5');
  };

  it('answers a PUT of 2 MiB with 503 and Retry-After, logs storage_unavailable, and keeps nothing', async () => {
    const res = await fetch(`${running.app.url}/upload/big.bin`, {
      method: 'PUT',
      body: new Uint8Array(randomBytes(2 * MiB)),
      headers: { Accept: 'application/json' },
    });
    await expectStorageUnavailable(res);
    await expectNothingLeft(running.app);
    const line = running.app.logs.find((l) => l.event === 'storage_unavailable');
    expect(line).toMatchObject({ level: 'error', code: 'SERVICE_UNAVAILABLE' });
    expect(running.app.logs.some((l) => l.error_code === 'UPLOAD_ABORTED')).toBe(false);
  });

  it('answers a chunked PUT and a multipart upload of 2 MiB with 503, and keeps nothing', async () => {
    await expectStorageUnavailable(await chunkedPut(running.app, 'chunked.bin', randomBytes(2 * MiB)));
    await expectNothingLeft(running.app);
    await expectStorageUnavailable(await postFile(running.app, randomBytes(2 * MiB), 'big.bin'));
    await expectNothingLeft(running.app);
  });

  it('answers a download whose blob cannot be read with 503, before any byte', async () => {
    const up = await uploadOk(running.app, 'small enough to store', 'small.txt', { uses: '2' });
    faults.failReads = true;
    try {
      const res = await fetch(up.download_url);
      await expectStorageUnavailable(res);
    } finally {
      faults.failReads = false;
    }
    // The failed read spent no use: the file still downloads, twice.
    for (let i = 0; i < 2; i += 1) expect(await (await fetch(up.download_url)).text()).toBe('small enough to store');
  });
});

describe('a stalled raw PUT is told 408 (docs/DECISIONS.md)', () => {
  const running = useAppStack({ env: { UPLOAD_STALL_SECONDS: '1' } });

  it('answers 408 UPLOAD_STALLED with Connection: close, and keeps nothing', async () => {
    const answer = await new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
      const req = http.request(`${running.app.url}/upload/stalled.bin`, {
        method: 'PUT',
        headers: { Accept: 'application/json', 'Content-Length': String(MiB) },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }));
      });
      req.write(randomBytes(100 * 1024)); // then nothing more, the socket kept open
    });
    expect(answer.status).toBe(408);
    expect(answer.connection).toBe('close');
    expect(JSON.parse(answer.body)).toMatchObject({ error: { code: 'UPLOAD_STALLED' } });
    await expectNothingLeft(running.app);
  });
});

describe("an upload's lease lasts as long as its request may, not MAX_DOWNLOAD_SECONDS", () => {
  const running = useAppStack({ env: { MAX_DOWNLOAD_SECONDS: '1' } });

  // An s3 multipart upload is dated by its start: a lease capped at the download cap lapsed while a
  // slow upload still ran, and the sweep then aborted it (docs/DECISIONS.md).
  it('renews past the download cap while the body is still arriving', async () => {
    const req = http.request(`${running.app.url}/upload/slow.bin`, { method: 'PUT', headers: { 'Content-Length': String(MiB) } });
    req.on('error', () => undefined);
    req.write(randomBytes(64 * 1024));
    const [created] = await waitFor(
      async () => running.app.storeCalls.filter((c) => c.op === 'create'),
      (calls) => calls.length === 1,
    );
    const blobKey = running.app.deps.keys.blob(created!.blobId);
    const leaseEnd = async () => {
      const members = await running.app.deps.redis.zrange(blobKey, 0, -1, 'WITHSCORES');
      return members.length === 2 ? Number(members[1]) : null;
    };
    const takenAt = Date.now();
    const first = await waitFor(leaseEnd, (end) => end !== null);
    // One lease TTL (15 s) ahead, where MAX_DOWNLOAD_SECONDS=1 capped it at its start + 1 s.
    expect(first! - takenAt).toBeGreaterThan(10_000);
    req.destroy();
    await expectNothingLeft(running.app);
  });
});

describe('the s3 writer uploads every byte, whatever the alignment of its writes', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startTestS3();
  });
  afterAll(async () => {
    await s3?.destroy();
  });

  const partSize = MIN_PART_SIZE;
  it.each([
    ['one part exactly, then a small write', [partSize, 1000]],
    ['a part filled by the write that crosses 256 KiB, then small writes', [200 * 1024, partSize - 200 * 1024, 1000, 1000]],
    ['two parts exactly, then a small write', [partSize, partSize, 10]],
    ['two parts exactly', [partSize, partSize]],
    ['a part and a half, then a write that ends on the boundary', [partSize + partSize / 2, partSize / 2, 5]],
  ])('%s', async (_name, sizes) => {
    const store = s3.store({ prefix: s3.newPrefix(), partSize });
    const data = randomBytes(sizes.reduce((a, b) => a + b, 0));
    const writes: Buffer[] = [];
    let at = 0;
    for (const size of sizes) {
      writes.push(data.subarray(at, at + size));
      at += size;
    }
    const blobId = newBlobId();
    const writer = store.create(blobId);
    await pipeline(Readable.from(writes), writer.stream);
    await writer.commit();
    const chunks: Buffer[] = [];
    for await (const chunk of await store.read(blobId)) chunks.push(chunk as Buffer);
    const stored = Buffer.concat(chunks);
    expect(stored.length).toBe(data.length);
    expect(stored.equals(data)).toBe(true);
  });
});
