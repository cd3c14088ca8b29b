import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DeleteObjectCommand, GetObjectTaggingCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { newBlobId } from '../../app/blobs/blob-id.js';
import type { BlobStore, StoredEntry } from '../../app/blobs/blob-store.js';
import { MIN_PART_SIZE, versioningWarning, type S3StoreOptions } from '../../app/blobs/s3-options.js';
import { createDecryptStream, createEncryptStream, plaintextSize } from '../../app/crypto/stream.js';
import { createLogger, type Logger } from '../../app/shared/logger.js';
import { startTestS3, type TestS3 } from '../helpers/s3-server.js';

const MiB = 1024 * 1024;

let s3: TestS3;
beforeAll(async () => {
  s3 = await startTestS3();
});
afterAll(async () => {
  await s3?.destroy();
});

/** A store under a prefix of its own, with the smallest part size S3 allows so a few MiB make several parts. */
function newStore(options: Partial<S3StoreOptions> = {}) {
  return s3.store({ prefix: s3.newPrefix(), partSize: MIN_PART_SIZE, ...options });
}

/** A logger whose JSON lines the test can read. */
function capturedLogger(): { logger: Logger; lines: () => Record<string, unknown>[]; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _e, done) {
      text += chunk.toString();
      done();
    },
  });
  const logger = createLogger({ service: 'api', level: 'debug', dir: '', stream, silentStdout: true });
  const lines = () =>
    text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, lines, text: () => text };
}

/** `size` bytes of random data in pieces of uneven sizes, as a request body would arrive. */
function* pieces(data: Buffer): Generator<Buffer> {
  let offset = 0;
  let step = 1;
  while (offset < data.length) {
    const size = Math.min(data.length - offset, ((step * 7919) % (700 * 1024)) + 1);
    yield data.subarray(offset, offset + size);
    offset += size;
    step += 1;
  }
}

async function put(store: BlobStore, data: Buffer, blobId = newBlobId()): Promise<string> {
  const writer = store.create(blobId);
  await pipeline(Readable.from(pieces(data), { objectMode: false }), writer.stream);
  await writer.commit();
  return blobId;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function entries(store: BlobStore): Promise<StoredEntry[]> {
  const all: StoredEntry[] = [];
  for await (const entry of store.list()) all.push(entry);
  return all;
}

function rejection(promise: Promise<unknown>): Promise<NodeJS.ErrnoException> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: NodeJS.ErrnoException) => error,
  );
}

/** What a proxy answers in the store's place: a status and an XML body. */
type Answer = { status: number; body: string };

const ACCESS_DENIED: Answer = {
  status: 403,
  body: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>',
};

/**
 * An HTTP proxy to the suite's own server that answers the requests `answer` names itself (it records
 * each name) and passes everything else through: a bucket policy that refuses an operation, or the
 * multipart uploads s3rver does not implement.
 */
async function answeringProxy(target: string, answer: (method: string, url: URL) => { name: string; answer: Answer } | null) {
  const upstream = new URL(target);
  const answered: string[] = [];
  const server = http.createServer((req, res) => {
    const own = answer(req.method ?? 'GET', new URL(req.url ?? '/', 'http://proxy'));
    if (own !== null) {
      answered.push(own.name);
      req.resume();
      res.writeHead(own.answer.status, { 'Content-Type': 'application/xml' });
      res.end(own.answer.body);
      return;
    }
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (reply) => {
        res.writeHead(reply.statusCode ?? 502, reply.headers);
        reply.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    answered,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

/**
 * An HTTP proxy to the suite's own server that passes everything through, except the first ranged
 * GET: its Range is dropped (as by a server that ignores it, which RFC 9110 allows) and the whole
 * object's answer stops after `bytes` bytes: the store stalls, its socket stays open.
 */
async function stallingProxy(target: string, bytes: number) {
  const upstream = new URL(target);
  let stalled = false;
  const server = http.createServer((req, res) => {
    const stall = !stalled && req.method === 'GET' && req.headers.range !== undefined;
    if (stall) stalled = true;
    const headers = { ...req.headers };
    if (stall) delete headers.range;
    const forward = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      if (!stall) return void answer.pipe(res);
      let sent = 0;
      answer.on('data', (chunk: Buffer) => {
        if (sent < bytes) res.write(chunk.subarray(0, bytes - sent));
        sent += chunk.length;
      });
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stalled: () => stalled,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

describe('s3 storage engine on a real S3-protocol server', () => {
  it.each([0, 1, 2])(
    'stores and returns encrypted streams of 0 bytes, less than a part, exactly a part and several parts, byte for byte (%i parts in flight while the next fills)',
    async (queueSize) => {
      const store = newStore({ queueSize });
      for (const size of [0, 1000, 300 * 1024, plaintextSize(MIN_PART_SIZE)!, 17 * MiB + 7]) {
        const plaintext = randomBytes(size);
        const blobId = newBlobId();
        const dataKey = randomBytes(32);
        const writer = store.create(blobId);
        const sent = createHash('sha256');
        const tap = new PassThrough().on('data', (chunk: Buffer) => sent.update(chunk));
        await pipeline(
          Readable.from(pieces(plaintext), { objectMode: false }),
          createEncryptStream({ dataKey, blobId }),
          tap,
          writer.stream,
        );
        await writer.commit();

        const stored = await collect(await store.read(blobId));
        expect(createHash('sha256').update(stored).digest('hex'), `ciphertext of ${size} bytes`).toBe(sent.digest('hex'));
        const decrypted = await collect((await store.read(blobId)).pipe(createDecryptStream({ dataKey, blobId })));
        expect(decrypted.equals(plaintext), `plaintext of ${size} bytes`).toBe(true);
      }
    },
  );

  it('makes nothing visible under the blob id before commit, then exactly <prefix><blobId> with no metadata or tags', async () => {
    const prefix = s3.newPrefix();
    const store = s3.store({ prefix, partSize: MIN_PART_SIZE });
    const client = s3.client();
    for (const size of [10, 7 * MiB]) {
      const blobId = newBlobId();
      const writer = store.create(blobId);
      await pipeline(Readable.from(pieces(randomBytes(size)), { objectMode: false }), writer.stream);
      expect((await rejection(store.read(blobId))).code, `${size} bytes, finished but not committed`).toBe('ENOENT');
      await writer.commit();
      const head = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: prefix + blobId }));
      expect(head.ContentLength).toBe(size);
      expect(head.Metadata ?? {}).toEqual({});
      const tags = await client.send(new GetObjectTaggingCommand({ Bucket: s3.bucket, Key: prefix + blobId }));
      expect(tags.TagSet ?? []).toEqual([]);
    }
    expect((await entries(store)).map((e) => e.ref.slice(0, prefix.length))).toEqual([prefix, prefix]);
  });

  it('serves byte ranges exactly: first byte, last byte, across a part boundary, whole', async () => {
    const store = newStore();
    const data = randomBytes(6 * MiB + 123);
    const blobId = await put(store, data);
    const last = data.length - 1;
    for (const [start, end] of [
      [0, 0],
      [last, last],
      [MIN_PART_SIZE - 10, MIN_PART_SIZE + 10],
      [1, 65_536 + 16],
      [0, last],
    ] as const) {
      const got = await collect(await store.read(blobId, { start, end }));
      expect(got.equals(data.subarray(start, end + 1)), `bytes ${start}-${end}`).toBe(true);
    }
  });

  it('rejects a missing blob with ENOENT, whole or ranged, and never reaches outside its prefix', async () => {
    const store = newStore();
    expect((await rejection(store.read(newBlobId()))).code).toBe('ENOENT');
    expect((await rejection(store.read(newBlobId(), { start: 0, end: 9 }))).code).toBe('ENOENT');
    expect((await rejection(store.read('../../etc/passwd'))).code).toBe('ENOENT');
    expect(() => store.create('not/a/blob/id')).toThrow(RangeError);
  });

  it('releases the socket of a download destroyed early, whole or ranged (one socket is enough for many)', async () => {
    // With a single socket, a download that kept its socket would make the next request time out.
    const store = newStore({ maxSockets: 1, requestTimeoutMs: 3000 });
    const data = randomBytes(12 * MiB);
    const blobId = await put(store, data);
    for (let round = 0; round < 3; round += 1) {
      for (const range of [undefined, { start: 0, end: 0 }, { start: 100, end: 8 * MiB }]) {
        const stream = await store.read(blobId, range);
        const first = await new Promise<Buffer>((resolve, reject) => stream.once('data', resolve).once('error', reject));
        expect(first.length).toBeGreaterThan(0);
        stream.destroy();
      }
    }
    expect((await collect(await store.read(blobId, { start: 5, end: 9 }))).equals(data.subarray(5, 10))).toBe(true);
  });

  it('leaves no object and no listed upload when a write is aborted midway, and abort() may be called again', async () => {
    const { logger, lines } = capturedLogger();
    const store = newStore({ log: logger });
    const blobId = newBlobId();
    const writer = store.create(blobId);
    // 11 MiB written: two parts sent or in flight, the upload started on the store.
    for (const piece of pieces(randomBytes(11 * MiB))) {
      if (!writer.stream.write(piece)) await new Promise((resolve) => writer.stream.once('drain', resolve));
    }
    await writer.abort();
    await writer.abort();
    expect(writer.stream.destroyed).toBe(true);
    expect((await rejection(store.read(blobId))).code).toBe('ENOENT');
    const listed = await entries(store);
    expect(listed.filter((e) => e.blobId === blobId)).toEqual([]);
    if (s3.kind === 's3rver') {
      // s3rver implements neither ListMultipartUploads nor AbortMultipartUpload: both are reported once.
      expect(lines().filter((l) => l.event === 's3_multipart_abort_unsupported')).toHaveLength(1);
      expect(lines().filter((l) => l.event === 's3_multipart_listing_unsupported')).toHaveLength(1);
    }
    await logger.close();
  });

  it('deletes the object when abort() follows a commit (the upload failed after the store had it)', async () => {
    const store = newStore();
    for (const size of [100, 6 * MiB]) {
      const blobId = newBlobId();
      const writer = store.create(blobId);
      await pipeline(Readable.from(pieces(randomBytes(size)), { objectMode: false }), writer.stream);
      await writer.commit();
      await writer.abort();
      expect((await rejection(store.read(blobId))).code).toBe('ENOENT');
    }
  });

  it('destroys idempotently: found with its size once, then not found', async () => {
    const store = newStore();
    const blobId = await put(store, randomBytes(1234));
    expect(await store.destroy(blobId, 'burned')).toEqual({ found: true, size: 1234 });
    expect(await store.destroy(blobId, 'burned')).toEqual({ found: false, size: 0 });
    expect((await rejection(store.read(blobId))).code).toBe('ENOENT');
    expect(await store.destroy(newBlobId(), 'expired')).toEqual({ found: false, size: 0 });
    expect(await store.destroy('../escape', 'expired')).toEqual({ found: false, size: 0 });
  });

  it('lists blobs, strangers and (where the store lists them) incomplete uploads, with sane times, and destroys each entry', async () => {
    const prefix = s3.newPrefix();
    const store = s3.store({ prefix, partSize: MIN_PART_SIZE });
    const client = s3.client();
    const before = Date.now();
    const a = await put(store, randomBytes(10));
    const b = await put(store, randomBytes(70_000));
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}notes.txt`, Body: 'not a blob' }));
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${s3.newPrefix()}${newBlobId()}`, Body: 'outside the prefix' }));
    const pending = store.create(newBlobId());
    for (const piece of pieces(randomBytes(6 * MiB)))
      if (!pending.stream.write(piece)) await new Promise((r) => pending.stream.once('drain', r));
    const after = Date.now();

    const listed = await entries(store);
    const blobs = listed.filter((e) => e.kind === 'blob');
    expect(blobs.map((e) => [e.blobId, e.size]).sort()).toEqual(
      [
        [a, 10],
        [b, 70_000],
        [null, 10],
      ].sort(),
    );
    // LastModified has one-second precision; an external store's clock may differ by a little more.
    const slack = s3.kind === 's3rver' ? 2000 : 5 * 60_000;
    for (const entry of listed) {
      expect(entry.modifiedMs).toBeGreaterThanOrEqual(before - slack);
      expect(entry.modifiedMs).toBeLessThanOrEqual(after + slack);
    }
    const partials = listed.filter((e) => e.kind === 'partial');
    if (s3.kind === 's3rver') expect(partials).toEqual([]);

    for (const entry of listed) expect((await store.destroyEntry(entry, 'orphan')).found).toBe(true);
    for (const entry of listed) expect((await store.destroyEntry(entry, 'orphan')).found).toBe(false);
    expect(await entries(store)).toEqual([]);
    await pending.abort();
  });

  it('counts used bytes from one listing per cache age, plus its own commits and deletes at once', async () => {
    let clock = 1_000_000;
    const prefix = s3.newPrefix();
    const store = s3.store({ prefix, partSize: MIN_PART_SIZE, usedBytesMaxAgeMs: 30_000, now: () => clock });
    const replica = s3.store({ prefix, partSize: MIN_PART_SIZE });
    await put(store, randomBytes(1000));
    expect(await store.usedBytes()).toBe(1000);

    const mine = await put(store, randomBytes(6 * MiB));
    expect(await store.usedBytes()).toBe(1000 + 6 * MiB);
    await store.destroy(mine, 'burned');
    expect(await store.usedBytes()).toBe(1000);
    // An upload aborted after its commit (its record could not be written) gives its bytes back too.
    const writer = store.create(newBlobId());
    await pipeline(Readable.from([randomBytes(700)]), writer.stream);
    await writer.commit();
    expect(await store.usedBytes()).toBe(1700);
    await writer.abort();
    expect(await store.usedBytes()).toBe(1000);

    await put(replica, randomBytes(5000)); // another replica's upload: seen after the next listing
    expect(await store.usedBytes()).toBe(1000);
    clock += 30_000;
    await vi.waitFor(async () => expect(await store.usedBytes()).toBe(6000), { timeout: 10_000, interval: 20 });
    expect(await store.freeBytes()).toBe(Infinity);
  });

  it('checks the bucket at start: reachable, writable, deletable, versioning off, leaving nothing behind', async () => {
    const { logger, lines } = capturedLogger();
    const store = newStore({ log: logger });
    const report = await store.checkBucket();
    expect(report.warnings).toEqual([]);
    expect(['Off', 'Unknown']).toContain(report.versioning);
    expect(await entries(store)).toEqual([]);
    expect(lines().find((l) => l.event === 's3_bucket_ready')).toMatchObject({ bucket: s3.bucket, partSize: MIN_PART_SIZE, queueSize: 0 });

    const missing = s3.store({ prefix: s3.newPrefix(), bucket: `cbx-missing-${randomBytes(4).toString('hex')}` });
    const error = await rejection(missing.checkBucket());
    expect(error.message).toMatch(/^S3 bucket "cbx-missing-[0-9a-f]+" cannot be used \(HeadBucket\)/);
    expect((await rejection(missing.check())).code).toBe('ESTORE');
    // A missing bucket is a broken store, not a missing blob: it must not turn into a 404.
    expect((await rejection(missing.read(newBlobId()))).code).toBe('ESTORE');
    await logger.close();
  });

  it('warns about bucket versioning, Enabled or Suspended (the decision, fed the answers a store gives)', () => {
    expect(versioningWarning('Enabled')).toMatch(/versioning is Enabled.*noncurrent version/);
    expect(versioningWarning('Suspended')).toMatch(/versioning is Suspended/);
    expect(versioningWarning(undefined)).toBeNull();
    expect(versioningWarning('Off')).toBeNull();
  });

  it('never puts the secret key in an error message or a log line, even when the store refuses it', async () => {
    const secret = `cbx-secret-${randomBytes(12).toString('hex')}`;
    const { logger, text } = capturedLogger();
    // An unknown key id: every store refuses it (s3rver checks key ids but not SigV4 signatures).
    const store = newStore({
      log: logger,
      credentials: { accessKeyId: `CBXUNKNOWN${randomBytes(5).toString('hex').toUpperCase()}`, secretAccessKey: secret },
    });
    const errors: Error[] = [];
    errors.push(await rejection(store.check()));
    errors.push(await rejection(store.checkBucket()));
    errors.push(await rejection(store.read(newBlobId())));
    errors.push(await rejection(store.destroy(newBlobId(), 'x')));
    const writer = store.create(newBlobId());
    errors.push(await rejection(pipeline(Readable.from(pieces(randomBytes(6 * MiB)), { objectMode: false }), writer.stream)));
    await writer.abort(); // the upload never started: nothing to clean up
    await logger.close();
    for (const error of errors) {
      expect((error as NodeJS.ErrnoException).code).toBe('ESTORE');
      const cause = (error as { cause?: unknown }).cause;
      const everything = `${error.message}\n${error.stack ?? ''}\n${cause instanceof Error ? `${cause.message}\n${cause.stack ?? ''}` : ''}`;
      expect(everything).not.toContain(secret);
    }
    expect(text()).not.toContain(secret);
  });
});

describe.runIf(process.env.CBX_TEST_S3_BUCKET === undefined || process.env.CBX_TEST_S3_BUCKET === '')(
  's3 storage engine when the suite’s own server fails',
  () => {
    it('errors the writer stream when the server dies mid-upload, so the pipeline fails; abort() fails honestly, then succeeds once it is back', async () => {
      const server = s3.server!;
      const store = newStore({ requestTimeoutMs: 5000 });
      const writer = store.create(newBlobId());
      let sent = 0;
      const source = Readable.from(
        (async function* () {
          const piece = randomBytes(MiB);
          while (sent < 200 * MiB) {
            if (sent === 6 * MiB) await server.stop(); // one part is in the store's hands; the next cannot be
            sent += piece.length;
            yield piece;
          }
        })(),
        { objectMode: false },
      );
      try {
        const failure = await rejection(pipeline(source, writer.stream));
        expect(failure.code).toBe('ESTORE');
        expect(failure.message).toMatch(/^s3 (UploadPart|CreateMultipartUpload) failed/);
        expect(sent).toBeLessThan(200 * MiB);
        expect((await rejection(writer.abort())).code).toBe('ESTORE');
      } finally {
        await server.start();
      }
      await writer.abort();
      expect((await entries(store)).filter((e) => e.kind === 'blob')).toEqual([]);
    });

    it('outlives deletes racing puts in one folder (stock s3rver exits on the first such race)', async () => {
      const server = s3.server!;
      const client = s3.client();
      const prefix = s3.newPrefix();
      const exited = new Promise<string>((resolve) => server.onExit((reason) => resolve(reason)));
      const racing = (async () => {
        for (let round = 0; round < 40; round++) {
          const [first, second] = [`${prefix}blobs/a${round}`, `${prefix}blobs/b${round}`];
          await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: first, Body: Buffer.alloc(16) }));
          // The delete empties the folder while the put of its neighbour is between mkdir and open.
          await Promise.all([
            client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: first })),
            client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: second, Body: randomBytes(128 * 1024) })),
          ]);
          await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: second }));
        }
        return 'finished';
      })();
      expect(await Promise.race([racing, exited])).toBe('finished');
      expect(server.pid()).toBeDefined();
    });

    it('releases the socket of a ranged download destroyed while the store stalls mid-body', async () => {
      const prefix = s3.newPrefix();
      const data = randomBytes(3 * MiB);
      const blobId = await put(newStore({ prefix }), data);
      const proxy = await stallingProxy(s3.server!.endpoint, 100_000);
      try {
        // One socket, and a request timeout far beyond the test's: only a released socket serves the next read.
        const store = newStore({ prefix, endpoint: proxy.endpoint, maxSockets: 1, requestTimeoutMs: 120_000 });
        const stream = await store.read(blobId, { start: 10, end: 2 * MiB });
        // Everything the store sent before it stalled (100,000 bytes, less the 10 skipped), then nothing.
        let received = 0;
        await new Promise<void>((resolve, reject) => {
          stream.on('data', (chunk: Buffer) => (received += chunk.length) === 100_000 - 10 && resolve()).once('error', reject);
        });
        expect(proxy.stalled()).toBe(true);
        stream.destroy();
        const again = await collect(await store.read(blobId, { start: 5, end: 9 }));
        expect(again.equals(data.subarray(5, 10))).toBe(true);
      } finally {
        await proxy.close();
      }
    }, 20_000);

    it('logs each unfinished upload it aborts as a shredded partial, from the sweep and from a shred', async () => {
      // s3rver implements no multipart listing: the proxy lists two unfinished uploads and takes their aborts.
      const prefix = s3.newPrefix();
      const [orphan, burned] = [newBlobId(), newBlobId()];
      const open = new Map([orphan, burned].map((id, i) => [`upload-${i}`, `${prefix}${id}`]));
      const listing = (wanted: string) =>
        `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>${s3.bucket}</Bucket><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${[
          ...open,
        ]
          .filter(([, key]) => key.startsWith(wanted))
          .map(([id, key]) => `<Upload><Key>${key}</Key><UploadId>${id}</UploadId><Initiated>2026-11-29T10:00:00.000Z</Initiated></Upload>`)
          .join('')}</ListMultipartUploadsResult>`;
      const proxy = await answeringProxy(s3.server!.endpoint, (method, url) => {
        if (method === 'GET' && url.searchParams.has('uploads'))
          return { name: 'ListMultipartUploads', answer: { status: 200, body: listing(url.searchParams.get('prefix') ?? '') } };
        if (method === 'DELETE' && url.searchParams.has('uploadId')) {
          const gone = open.delete(url.searchParams.get('uploadId')!);
          return {
            name: 'AbortMultipartUpload',
            answer: gone ? { status: 204, body: '' } : { status: 404, body: '<Error><Code>NoSuchUpload</Code></Error>' },
          };
        }
        return null;
      });
      const { logger, lines } = capturedLogger();
      try {
        const store = newStore({ prefix, endpoint: proxy.endpoint, log: logger });
        const partials = (await entries(store)).filter((e) => e.kind === 'partial');
        expect(partials.map((e) => e.blobId).sort()).toEqual([orphan, burned].sort());
        const orphanEntry = partials.find((e) => e.blobId === orphan)!;
        expect(await store.destroyEntry(orphanEntry, 'orphan')).toEqual({ found: true, size: 0 });
        expect(await store.destroyEntry(orphanEntry, 'orphan')).toEqual({ found: false, size: 0 });
        expect(await store.destroy(burned, 'burned')).toEqual({ found: true, size: 0 });
        expect(open.size).toBe(0);
        await logger.close();
        // What the worker's cinderbox_shreds_total{kind="partial"} counts (it stayed 0 on s3).
        expect(lines().filter((l) => l.event === 'blob_shredded')).toEqual([
          expect.objectContaining({ kind: 'partial', size: 0, passes: 0, reason: 'orphan' }),
          expect.objectContaining({ kind: 'partial', size: 0, passes: 0, reason: 'burned' }),
        ]);
      } finally {
        await proxy.close();
      }
    });

    it('shreds, lists and aborts when the policy denies the multipart clean-up: warned once each, left to the lifecycle rule', async () => {
      // A policy without s3:ListBucketMultipartUploads and s3:AbortMultipartUpload (GET ?uploads, DELETE ?uploadId).
      const proxy = await answeringProxy(s3.server!.endpoint, (method, url) =>
        method === 'GET' && url.searchParams.has('uploads')
          ? { name: 'ListMultipartUploads', answer: ACCESS_DENIED }
          : method === 'DELETE' && url.searchParams.has('uploadId')
            ? { name: 'AbortMultipartUpload', answer: ACCESS_DENIED }
            : null,
      );
      const { logger, lines } = capturedLogger();
      try {
        const store = newStore({ endpoint: proxy.endpoint, log: logger });
        const first = await put(store, randomBytes(1234));
        const second = await put(store, randomBytes(4321));
        // The object is deleted and the shred succeeds, though the listing of its parts was refused.
        expect(await store.destroy(first, 'burned')).toEqual({ found: true, size: 1234 });
        expect((await rejection(store.read(first))).code).toBe('ENOENT');
        // The sweep's listing still yields the objects; the engine does not ask again for an hour.
        expect((await entries(store)).map((e) => [e.blobId, e.kind])).toEqual([[second, 'blob']]);
        expect(await store.destroy(second, 'expired')).toEqual({ found: true, size: 4321 });
        expect(proxy.answered).toEqual(['ListMultipartUploads']);
        // A failed upload's abort is refused too: the writer is cleaned up as far as it may be.
        const writer = store.create(newBlobId());
        for (const piece of pieces(randomBytes(11 * MiB))) {
          if (!writer.stream.write(piece)) await new Promise((resolve) => writer.stream.once('drain', resolve));
        }
        await writer.abort();
        await writer.abort();
        expect(proxy.answered).toEqual(['ListMultipartUploads', 'AbortMultipartUpload']);
        await logger.close();
        const warnings = lines().filter((l) => l.level === 'warn');
        expect(warnings.map((l) => l.event)).toEqual(['s3_multipart_listing_denied', 's3_multipart_abort_denied']);
        expect(warnings[0]).toMatchObject({ retry_in_minutes: 60, hint: expect.stringContaining('s3:ListBucketMultipartUploads') });
        expect(warnings[1]).toMatchObject({ hint: expect.stringContaining('s3:AbortMultipartUpload') });
      } finally {
        await proxy.close();
      }
    });

    it('fails check() while the server is down and passes again once it is back, with the same store', async () => {
      const server = s3.server!;
      const store = newStore();
      await store.check();
      await server.stop();
      try {
        const error = await rejection(store.check());
        expect(error.code).toBe('ESTORE');
        expect(error.message).toMatch(/^s3 HeadBucket failed/);
        expect((await rejection(store.read(newBlobId()))).code).toBe('ESTORE');
      } finally {
        await server.start();
      }
      await store.check();
    });

    it('sends the store nothing but ciphertext: no plaintext, no filename in any raw file of the bucket', async () => {
      const server = s3.server!;
      const store = newStore();
      const marker = `plaintext-marker-${randomBytes(8).toString('hex')}`;
      const filename = `secret-plans-${randomBytes(4).toString('hex')}.pdf`;
      const plaintext = Buffer.from(`${filename}\n${marker.repeat(200_000)}`); // ~7 MiB: a multipart upload
      for (const abortAfterParts of [false, true]) {
        const blobId = newBlobId();
        const writer = store.create(blobId);
        const encrypt = createEncryptStream({ dataKey: randomBytes(32), blobId });
        if (abortAfterParts) {
          encrypt.pipe(writer.stream);
          encrypt.end(plaintext.subarray(0, 6 * MiB));
          await new Promise((resolve) => writer.stream.once('finish', resolve));
          await writer.abort(); // s3rver keeps the parts of an aborted upload: they are scanned too
        } else {
          await pipeline(Readable.from(pieces(plaintext), { objectMode: false }), encrypt, writer.stream);
          await writer.commit();
        }
      }
      const files: string[] = [];
      const walk = async (dir: string): Promise<void> => {
        for (const entry of await readdir(dir, { withFileTypes: true })) {
          const full = path.join(dir, entry.name);
          if (entry.isDirectory()) await walk(full);
          else files.push(full);
        }
      };
      await walk(server.directory);
      const bytes = (await Promise.all(files.map((f) => readFile(f)))).reduce((sum, b) => sum + b.length, 0);
      expect(bytes).toBeGreaterThan(2 * 6 * MiB);
      for (const file of files) {
        const raw = await readFile(file);
        expect(raw.includes(marker), file).toBe(false);
        expect(raw.includes(marker.slice(0, 24)), file).toBe(false);
        expect(raw.includes(filename), file).toBe(false);
        expect(file.includes(filename)).toBe(false);
      }
    });
  },
);
