import { randomBytes } from 'node:crypto';
import { Readable, Transform, Writable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import type { Logger } from '../shared/logger.js';
import { countTransferred } from '../shared/heap.js';
import { createUsage } from './usage.js';
import { isBlobId } from './blob-id.js';
import type { BlobStore, BlobWriter, ByteRange, DestroyResult, StoredEntry } from './blob-store.js';
import {
  choosePartSize,
  DEFAULT_PART_SIZE,
  DEFAULT_QUEUE_SIZE,
  MAX_PARTS,
  USED_BYTES_MAX_AGE_MS,
  versioningWarning,
  type S3StoreOptions,
  type VersioningState,
} from './s3-options.js';

/**
 * The `s3` storage engine (SPEC §10.3): blobs as objects `<prefix><blobId>` in any S3-compatible
 * bucket. Uploads are multipart uploads written part by part as ciphertext streams in, so a transfer
 * holds at most `queueSize + 1` part buffers whatever the file size (one by default; docs/OPERATIONS.md
 * has the measured figures); downloads are (ranged) GETs streamed straight from the socket. Only ciphertext
 * and the blob id reach the store: no metadata, no tags, no filename.
 *
 * This module loads the AWS SDK (about 12–19 MiB of RSS): import it only when STORAGE_BACKEND=s3.
 * Its options and the pure decisions live in s3-options.ts, which loads nothing.
 */

// Below this an upload keeps its chunks as they came and never allocates a part buffer, so a burst of
// small uploads does not cost a part size each.
const SMALL_UPLOAD_BYTES = 256 * 1024;

interface BucketCheck {
  versioning: VersioningState;
  /** Sentences for the operator; also logged as warnings. */
  warnings: string[];
}

export interface S3BlobStore extends BlobStore {
  readonly engine: 's3';
  readonly partSize: number;
  readonly queueSize: number;
  /**
   * Start-up check for both processes: the bucket answers, an object can be written and deleted under
   * the prefix (the shred needs DeleteObject), and versioning is off (warns otherwise). Throws when the
   * bucket cannot be used; the message names the bucket and the failing step, never a credential.
   */
  checkBucket(): Promise<BucketCheck>;
}

interface StoreErrorFields {
  code: 'ENOENT' | 'ESTORE';
}

/** An error the engine throws: `code` ENOENT (no such blob) or ESTORE (the store failed or refused). */
type S3StoreError = Error & StoreErrorFields;

function noSuchBlob(): S3StoreError {
  return Object.assign(new Error('no such blob'), { code: 'ENOENT' as const });
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : 'Error';
}

function httpStatus(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

// SDK errors carry S3's message (or the socket's); neither ever holds a credential, which is never
// sent over the wire. The original stays available as `cause` for a stack, not for the log line.
function storeError(operation: string, error: unknown): S3StoreError {
  const status = httpStatus(error);
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return Object.assign(new Error(`s3 ${operation} failed: ${detail}${status ? ` (HTTP ${status})` : ''}`, { cause: error }), {
    code: 'ESTORE' as const,
  });
}

/** No such object. A missing bucket is not a missing blob: it is a store failure (503, not 404). */
function isNotFound(error: unknown): boolean {
  return errorName(error) !== 'NoSuchBucket' && (['NotFound', 'NoSuchKey'].includes(errorName(error)) || httpStatus(error) === 404);
}

/** The store does not implement the operation (s3rver: ListMultipartUploads, AbortMultipartUpload, versioning). */
function isUnsupported(error: unknown): boolean {
  const status = httpStatus(error);
  return ['NotImplemented', 'MethodNotAllowed'].includes(errorName(error)) || status === 501 || status === 405;
}

/**
 * The policy does not let these credentials do the operation (no s3:ListBucketMultipartUploads, …).
 * By S3's error code only: a bad signature or a skewed clock is a 403 too, and is a store failure.
 */
function isDenied(error: unknown): boolean {
  return errorName(error) === 'AccessDenied';
}

/** After a denied ListMultipartUploads, the engine asks again this much later (a policy may be fixed). */
const LISTING_DENIED_RETRY_MS = 60 * 60_000;

interface Context {
  client: S3Client;
  bucket: string;
  prefix: string;
  partSize: number;
  queueSize: number;
  log: Logger;
  /** This process committed (`bytes` > 0) or deleted (< 0) the object `key`: the usage counts it at once. */
  account(bytes: number, key: string): void;
  /**
   * The store cannot abort multipart uploads, or these credentials may not: logged once per store
   * (the upload's parts are left to the bucket lifecycle rule). False when `error` is neither.
   */
  abortRefused(error: unknown): boolean;
}

export function createS3Store(options: S3StoreOptions): S3BlobStore {
  const { bucket, prefix } = options;
  if (prefix === '' || prefix.startsWith('/')) throw new RangeError('prefix must be non-empty and relative');
  const log = options.log.child({ module: 's3-store' });
  const partSize = choosePartSize(options.partSize ?? DEFAULT_PART_SIZE, options.maxObjectBytes);
  const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
  if (!Number.isSafeInteger(queueSize) || queueSize < 0) throw new RangeError('queueSize must be an integer of 0 or more');
  const now = options.now ?? Date.now;
  const maxAgeMs = options.usedBytesMaxAgeMs ?? USED_BYTES_MAX_AGE_MS;
  const checkTimeoutMs = options.checkTimeoutMs ?? 1000;

  // The SDK logs every failed command at error level with its input; the engine reports its own
  // failures, so only the SDK's warnings (socket pool exhausted, …) are kept, and only their text.
  const sdkLogger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (...content: unknown[]) =>
      log.warn('s3_sdk_warning', {
        detail: content
          .filter((c) => typeof c === 'string')
          .join(' ')
          .slice(0, 500),
      }),
    error: () => undefined,
  };
  const makeClient = (overrides: { maxAttempts?: number; maxSockets: number }) =>
    new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      credentials: options.credentials,
      forcePathStyle: options.forcePathStyle,
      maxAttempts: overrides.maxAttempts,
      logger: sdkLogger,
      // Integrity is the stream format's job (every chunk is authenticated end to end); the SDK's default
      // CRC32 checksums are not understood by every S3-compatible server (s3rver, older MinIO and Ceph).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: 1000,
        requestTimeout: options.requestTimeoutMs ?? 30_000,
        throwOnRequestTimeout: true,
        httpAgent: { keepAlive: true, maxSockets: overrides.maxSockets },
        httpsAgent: { keepAlive: true, maxSockets: overrides.maxSockets },
      },
    });
  const client = makeClient({ maxSockets: options.maxSockets ?? 512 });
  // Health checks get their own connection and no retries, so a busy transfer pool cannot make them late.
  const checkClient = makeClient({ maxAttempts: 1, maxSockets: 2 });

  const keyOf = (blobId: string) => prefix + blobId;
  const blobIdOf = (key: string) => {
    const name = key.slice(prefix.length);
    return key.startsWith(prefix) && isBlobId(name) ? name : null;
  };

  let multipartListing: 'unknown' | 'supported' | 'unsupported' = 'unknown';
  let listingDeniedUntil = 0;
  const abortRefusalsLogged = new Set<string>();
  const abortRefused = (error: unknown) => {
    const event = isUnsupported(error) ? 's3_multipart_abort_unsupported' : isDenied(error) ? 's3_multipart_abort_denied' : null;
    if (event === null) return false;
    if (abortRefusalsLogged.has(event)) return true;
    abortRefusalsLogged.add(event);
    log.warn(event, {
      bucket,
      hint:
        event === 's3_multipart_abort_denied'
          ? 'grant s3:AbortMultipartUpload on the prefix; until then the parts of failed uploads are left to the bucket lifecycle rule'
          : 'the store keeps the parts of failed uploads; add a lifecycle rule that aborts incomplete multipart uploads',
    });
    return true;
  };

  const usage = createUsage({
    now,
    maxAgeMs,
    list: () => objectSizes(),
    onRefreshFailed: (error) => log.warn('s3_usage_listing_failed', { error: error instanceof Error ? error.message : String(error) }),
  });

  async function objectSizes(): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    for await (const page of objectPages())
      for (const object of page.Contents ?? []) if (object.Key !== undefined) sizes.set(object.Key, object.Size ?? 0);
    return sizes;
  }

  async function* objectPages() {
    let token: string | undefined;
    do {
      const page = await client
        .send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }))
        .catch((error: unknown) => {
          throw storeError('ListObjectsV2', error);
        });
      yield page;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /**
   * Incomplete multipart uploads under `keyPrefix`; nothing when the store cannot list them, or may
   * not: then they are the bucket lifecycle rule's (a shred has deleted its object already, and must
   * not fail for a permission that only the clean-up of failed uploads needs).
   */
  async function* uploads(keyPrefix: string) {
    if (multipartListing === 'unsupported' || now() < listingDeniedUntil) return;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await client.send(
          new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: keyPrefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
        );
      } catch (error) {
        if (isDenied(error)) {
          listingDeniedUntil = now() + LISTING_DENIED_RETRY_MS;
          log.warn('s3_multipart_listing_denied', {
            bucket,
            retry_in_minutes: LISTING_DENIED_RETRY_MS / 60_000,
            hint: 'grant s3:ListBucketMultipartUploads on the bucket; until then incomplete uploads are left to the bucket lifecycle rule',
          });
          return;
        }
        if (!isUnsupported(error)) throw storeError('ListMultipartUploads', error);
        multipartListing = 'unsupported';
        log.info('s3_multipart_listing_unsupported', { bucket, hint: 'incomplete uploads are left to the bucket lifecycle rule' });
        return;
      }
      multipartListing = 'supported';
      for (const upload of page.Uploads ?? []) {
        if (upload.Key !== undefined && upload.UploadId !== undefined)
          yield { key: upload.Key, uploadId: upload.UploadId, initiated: upload.Initiated };
      }
      if (!page.IsTruncated) return;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /** True when the upload existed and is now aborted; false when there was none. */
  async function abortUpload(key: string, uploadId: string): Promise<boolean> {
    try {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
      return true;
    } catch (error) {
      if (errorName(error) === 'NoSuchUpload' || httpStatus(error) === 404) return false;
      if (abortRefused(error)) return false;
      throw storeError('AbortMultipartUpload', error);
    }
  }

  async function headSize(key: string): Promise<number | null> {
    try {
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return head.ContentLength ?? 0;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw storeError('HeadObject', error);
    }
  }

  async function deleteObject(key: string): Promise<DestroyResult> {
    const size = await headSize(key);
    // Deleted even when HEAD saw nothing: it is idempotent, and a HEAD is no proof on every store.
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch((error: unknown) => {
      throw storeError('DeleteObject', error);
    });
    if (size !== null) usage.add(-size, key);
    return { found: size !== null, size: size ?? 0 };
  }

  const context: Context = {
    client,
    bucket,
    prefix,
    partSize,
    queueSize,
    log,
    account: (bytes, key) => usage.add(bytes, key),
    abortRefused,
  };

  return {
    engine: 's3',
    partSize,
    queueSize,

    create(blobId) {
      if (!isBlobId(blobId)) throw new RangeError('not a blob id');
      return new MultipartWriter(context, keyOf(blobId));
    },

    async read(blobId, range) {
      if (!isBlobId(blobId)) throw noSuchBlob();
      if (
        range &&
        !(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end) && range.start >= 0 && range.end >= range.start)
      ) {
        throw new RangeError('invalid byte range');
      }
      let response;
      try {
        response = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key: keyOf(blobId), Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
        );
      } catch (error) {
        if (isNotFound(error)) throw noSuchBlob();
        // The object ends before the range starts: a short read, as a file would give (the reader's
        // authentication then says the blob is damaged); not a failure of the store.
        if (range && (errorName(error) === 'InvalidRange' || httpStatus(error) === 416)) return Readable.from([]);
        throw storeError('GetObject', error);
      }
      const body = response.Body;
      if (!(body instanceof Readable)) throw storeError('GetObject', new Error('the response has no body stream'));
      return range ? exactRange(body, range, response.ContentRange) : body;
    },

    async destroy(blobId, reason) {
      if (!isBlobId(blobId)) return { found: false, size: 0 };
      const started = performance.now();
      const key = keyOf(blobId);
      const result = await deleteObject(key);
      let aborted = false;
      for await (const upload of uploads(key)) {
        if (upload.key === key && (await abortUpload(upload.key, upload.uploadId))) aborted = true;
      }
      // The same lines as the fs engine's shred (the object, its unfinished upload); an object store
      // cannot overwrite, so no passes.
      const duration_ms = Math.round(performance.now() - started);
      if (result.found) log.info('blob_shredded', { kind: 'blob', size: result.size, passes: 0, duration_ms, reason });
      if (aborted) log.info('blob_shredded', { kind: 'partial', size: 0, passes: 0, duration_ms, reason });
      return { found: result.found || aborted, size: result.size };
    },

    async *list(): AsyncIterable<StoredEntry> {
      for await (const page of objectPages()) {
        for (const object of page.Contents ?? []) {
          if (object.Key === undefined) continue;
          // A store that gives no date makes the entry look new: the sweep waits rather than guesses.
          yield {
            blobId: blobIdOf(object.Key),
            kind: 'blob',
            modifiedMs: object.LastModified?.getTime() ?? now(),
            size: object.Size ?? 0,
            ref: object.Key,
          };
        }
      }
      for await (const upload of uploads(prefix)) {
        yield {
          blobId: blobIdOf(upload.key),
          kind: 'partial',
          modifiedMs: upload.initiated?.getTime() ?? now(),
          size: 0,
          ref: JSON.stringify([upload.key, upload.uploadId]),
        };
      }
    },

    async destroyEntry(entry, reason) {
      if (entry.kind === 'blob') {
        if (!entry.ref.startsWith(prefix)) throw new RangeError('entry is not under this store prefix');
        const result = await deleteObject(entry.ref);
        if (result.found) log.info('blob_shredded', { kind: 'blob', size: result.size, passes: 0, duration_ms: 0, reason });
        return result;
      }
      const [key, uploadId] = JSON.parse(entry.ref) as [string, string];
      if (typeof key !== 'string' || typeof uploadId !== 'string' || !key.startsWith(prefix))
        throw new RangeError('entry is not an upload under this store prefix');
      const found = await abortUpload(key, uploadId);
      if (found) log.info('blob_shredded', { kind: 'partial', size: 0, passes: 0, duration_ms: 0, reason });
      return { found, size: 0 };
    },

    freeBytes: () => Promise.resolve(Infinity),

    usedBytes: () => usage.get(),

    async check() {
      try {
        await checkClient.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal: AbortSignal.timeout(checkTimeoutMs) });
      } catch (error) {
        throw storeError('HeadBucket', error);
      }
    },

    async checkBucket() {
      const step = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
        try {
          return await run();
        } catch (error) {
          throw Object.assign(
            new Error(
              `S3 bucket "${bucket}" cannot be used (${what}): ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
              { cause: error },
            ),
            {
              code: 'ESTORE',
            },
          );
        }
      };
      await step('HeadBucket', () => client.send(new HeadBucketCommand({ Bucket: bucket })));
      // The probe's name is not a blob id, so a probe left by a crash is a stranger the sweep removes.
      const probe = `${prefix}.probe-${randomBytes(8).toString('hex')}`;
      await step('PutObject under the prefix', () =>
        client.send(new PutObjectCommand({ Bucket: bucket, Key: probe, Body: Buffer.alloc(0) })),
      );
      await step('DeleteObject under the prefix', () => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: probe })));
      await step('ListObjectsV2 of the prefix', () =>
        client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, MaxKeys: 1 })),
      );

      let versioning: VersioningState;
      try {
        const answer = await client.send(new GetBucketVersioningCommand({ Bucket: bucket }));
        versioning = answer.Status === 'Enabled' || answer.Status === 'Suspended' ? answer.Status : 'Off';
      } catch (error) {
        if (!isUnsupported(error)) throw storeError('GetBucketVersioning', error);
        versioning = 'Unknown';
      }
      const warnings = [versioningWarning(versioning)].filter((w): w is string => w !== null);
      for (const warning of warnings) log.warn('s3_bucket_versioning_on', { bucket, versioning, warning });
      log.info('s3_bucket_ready', {
        bucket,
        prefix,
        endpoint: options.endpoint ?? `aws:${options.region}`,
        versioning,
        partSize,
        queueSize,
      });
      return { versioning, warnings };
    },

    close() {
      client.destroy();
      checkClient.destroy();
      return Promise.resolve();
    },
  };
}

/**
 * An HTTP server may answer a Range request with more than was asked (RFC 9110 lets it ignore Range;
 * s3rver reads `bytes=0-0` as the whole object). The caller gets exactly [start, end] or an error,
 * or, when the object itself ends before `end`, what it has (a short read, as a file gives).
 */
function exactRange(body: Readable, range: ByteRange, contentRange: string | undefined): Readable {
  const served = contentRange === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange);
  const servedStart = served ? Number(served[1]) : 0;
  const servedEnd = served ? Number(served[2]) : Infinity;
  const objectEnd = served && served[3] !== '*' ? Number(served[3]) - 1 : Infinity;
  if (served && servedStart === range.start && servedEnd === Math.min(range.end, objectEnd)) return body;
  if (servedStart > range.start || servedEnd < Math.min(range.end, objectEnd)) {
    body.destroy();
    throw storeError(
      'GetObject',
      new Error(`asked for bytes ${range.start}-${range.end}, the store sent ${contentRange ?? 'the whole object'}`),
    );
  }
  // `position`: where in the object the next byte of `body` is. Once the range is complete, or when
  // the consumer destroys the result (even while the store stalls), `body` is destroyed at once,
  // which releases its socket.
  let position = servedStart;
  const complete = () => position > range.end;
  const exact = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (complete()) return done();
      const from = Math.max(0, range.start - position);
      const to = Math.min(chunk.length, range.end + 1 - position);
      position += chunk.length;
      if (to > from) this.push(chunk.subarray(from, to));
      if (complete()) {
        this.push(null);
        body.destroy();
      }
      done();
    },
    flush(done) {
      // The body ended: a short read where the object ends (a damaged blob, which its reader's
      // authentication reports), a failure of the store anywhere else.
      if (complete() || position > objectEnd || objectEnd === Infinity) return done();
      done(storeError('GetObject', new Error('the response ended before the requested range')));
    },
  });
  body.on('error', (error) => {
    if (!complete()) exact.destroy(storeError('GetObject', error));
  });
  exact.once('close', () => body.destroy());
  body.pipe(exact);
  return exact;
}

/**
 * One upload: chunks are copied into a part buffer; a full part is sent while the next one fills, at
 * most `queueSize` in flight (then `write` waits: backpressure reaches the client; with 0, `write`
 * waits for each part). Part buffers are reused, so an upload holds at most `queueSize + 1` of them. Small uploads never start a multipart
 * upload: what they wrote is kept until commit() sends it as one PutObject. Once an upload outgrows
 * SMALL_UPLOAD_BYTES, every later byte goes through part buffers, whatever the alignment of the writes.
 */
class MultipartWriter implements BlobWriter {
  readonly stream: Writable;
  private uploadId: Promise<string> | null = null;
  private partCount = 0;
  private readonly parts: CompletedPart[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private free: Buffer[] = [];
  private small: Buffer[] = [];
  private smallBytes = 0;
  /** Set once the upload outgrew `small`: from then on `small` stays empty. */
  private spilled = false;
  private part: Buffer | null = null;
  private fill = 0;
  private total = 0;
  /** Bytes handed to UploadPart or kept as the PutObject body: must equal `total` at the end. */
  private sent = 0;
  private tail: Buffer | null = null;
  private finished = false;
  /** Committed, and counted in the usage (until a later abort deletes it). */
  private committed = false;
  private failure: Error | null = null;
  private commitAttempt: Promise<void> | null = null;
  private aborting: Promise<void> | null = null;
  private readonly controller = new AbortController();

  constructor(
    private readonly context: Context,
    private readonly key: string,
  ) {
    this.stream = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.accept(chunk).then(() => callback(), callback);
      },
      final: (callback) => {
        this.flush().then(() => callback(), callback);
      },
    });
  }

  private async accept(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    this.total += chunk.length;
    // Decided by `spilled`, not by `part === null`: a part that filled exactly at a chunk boundary
    // leaves no part buffer, and the bytes after it must not go back to `small` (flush() would
    // then complete the multipart upload without them).
    if (!this.spilled) {
      if (this.smallBytes + chunk.length <= SMALL_UPLOAD_BYTES) {
        this.small.push(chunk);
        this.smallBytes += chunk.length;
        return;
      }
      this.spilled = true;
      const held = this.small;
      this.small = [];
      this.smallBytes = 0;
      for (const piece of held) await this.copyIntoParts(piece);
    }
    await this.copyIntoParts(chunk);
  }

  /** Copies into the current part buffer, sending each part as it fills. */
  private async copyIntoParts(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      this.part ??= this.takeBuffer();
      const copied = chunk.copy(this.part, this.fill, offset);
      this.fill += copied;
      offset += copied;
      if (this.fill === this.context.partSize) {
        const full = this.part;
        this.part = null;
        this.fill = 0;
        await this.send(full, full.length);
      }
    }
  }

  private takeBuffer(): Buffer {
    // Never sent beyond what was written into it, so uninitialised memory cannot leak to the store.
    return this.free.pop() ?? Buffer.allocUnsafe(this.context.partSize);
  }

  /** Waits for a free slot, then starts sending one part (its result lands in `parts` or `failure`). */
  private async send(buffer: Buffer, length: number): Promise<void> {
    while (this.inFlight.size > 0 && this.inFlight.size >= this.context.queueSize) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
    if (this.partCount === MAX_PARTS)
      throw this.fail(new Error(`an object may have at most ${MAX_PARTS} parts of ${this.context.partSize} bytes`));
    const partNumber = ++this.partCount;
    this.sent += length;
    countTransferred(length);
    const uploadId = await this.startUpload();
    const { client, bucket } = this.context;
    const sending = client
      .send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: this.key,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: buffer.subarray(0, length),
        }),
        { abortSignal: this.controller.signal },
      )
      .then(
        (answer) => {
          this.parts.push({ PartNumber: partNumber, ETag: answer.ETag });
          this.free.push(buffer);
        },
        (error: unknown) => {
          this.fail(storeError('UploadPart', error));
        },
      )
      .finally(() => this.inFlight.delete(sending));
    this.inFlight.add(sending);
    // Queue size 0: the caller's write waits for this part, so its buffer is the one the next part reuses.
    if (this.context.queueSize === 0) {
      await sending;
      if (this.failure) throw this.failure;
    }
  }

  private startUpload(): Promise<string> {
    const { client, bucket } = this.context;
    // Not abortable on purpose: once sent, abort() must learn the upload id to abort the upload itself.
    this.uploadId ??= client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: this.key })).then(
      (answer) => {
        if (answer.UploadId === undefined) throw new Error('CreateMultipartUpload returned no UploadId');
        return answer.UploadId;
      },
      (error: unknown) => {
        throw this.fail(storeError('CreateMultipartUpload', error));
      },
    );
    return this.uploadId;
  }

  /** The first failure wins and errors the stream, so the caller's pipeline fails even while it waits for input. */
  private fail(error: Error): Error {
    if (this.failure === null) {
      this.failure = error;
      if (this.aborting === null) this.stream.destroy(error);
    }
    return this.failure;
  }

  private async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.uploadId !== null) {
      if (this.part !== null && this.fill > 0) {
        const last = this.part;
        this.part = null;
        await this.send(last, this.fill);
      }
      await Promise.all(this.inFlight);
      if (this.failure) throw this.failure;
    } else {
      // No part was sent: everything written is in `small` or in the one part buffer, never both.
      this.tail = this.part !== null ? this.part.subarray(0, this.fill) : Buffer.concat(this.small);
      this.sent = this.tail.length;
      this.part = null;
      this.small = [];
    }
    // A truncated object must never be committed: a writer bug fails the upload instead.
    if (this.sent !== this.total) throw this.fail(new Error(`s3 writer lost bytes: ${this.total} written, ${this.sent} uploaded`));
    this.free = [];
    this.finished = true;
  }

  commit(): Promise<void> {
    if (this.commitAttempt) return this.commitAttempt;
    if (!this.finished || this.aborting) return Promise.reject(new Error('commit() needs a finished, not aborted, write'));
    const { client, bucket } = this.context;
    this.commitAttempt = (async () => {
      try {
        if (this.uploadId !== null) {
          const uploadId = await this.uploadId;
          const parts = [...this.parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
          await client.send(
            new CompleteMultipartUploadCommand({ Bucket: bucket, Key: this.key, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
          );
        } else {
          await client.send(new PutObjectCommand({ Bucket: bucket, Key: this.key, Body: this.tail ?? Buffer.alloc(0) }));
        }
      } catch (error) {
        throw storeError(this.uploadId !== null ? 'CompleteMultipartUpload' : 'PutObject', error);
      }
      this.tail = null;
      this.committed = true;
      this.context.account(this.total, this.key);
    })();
    return this.commitAttempt;
  }

  abort(): Promise<void> {
    this.aborting ??= this.cleanUp().catch((error: unknown) => {
      this.aborting = null; // a later abort() tries again
      throw error;
    });
    return this.aborting;
  }

  private async cleanUp(): Promise<void> {
    this.controller.abort();
    if (!this.stream.destroyed) this.stream.destroy();
    await Promise.allSettled([...this.inFlight]);
    this.part = null;
    this.small = [];
    this.free = [];
    this.tail = null;
    const { client, bucket } = this.context;
    // A commit that failed on our side may still have completed on the store's: wait for it, then delete.
    if (this.commitAttempt !== null) {
      await this.commitAttempt.catch(() => undefined);
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: this.key })).catch((error: unknown) => {
        throw storeError('DeleteObject', error);
      });
      if (this.committed) this.context.account(-this.total, this.key);
      this.committed = false;
    }
    const uploadId = this.uploadId === null ? null : await this.uploadId.catch(() => null);
    if (uploadId === null) return;
    try {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: this.key, UploadId: uploadId }));
    } catch (error) {
      if (errorName(error) === 'NoSuchUpload' || httpStatus(error) === 404) return; // completed, or already aborted
      if (this.context.abortRefused(error)) return;
      throw storeError('AbortMultipartUpload', error);
    }
  }
}
