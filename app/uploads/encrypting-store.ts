import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError, insufficientStorage } from '../http/errors.js';
import { ciphertextSize, createEncryptStream } from '../crypto/stream.js';
import { generateDataKey } from '../crypto/keys.js';
import { detectType, isAllowedType, SNIFF_BYTES } from './content-type.models.js';
import { storageUnavailable, type BlobStore } from '../blobs/blob-store.js';
import { fileTooLarge, unsupportedMediaType, uploadStalled } from './uploads.errors.js';

interface StoreLimits {
  maxFileSize: number;
  maxStorageBytes: number | undefined;
  /** Stored bytes this upload replaces, stored until it is (a drop's first file): room it may use. */
  reclaims?: number;
  allowedMimeTypes: string[];
  stallMs: number;
}

export interface StoredBlob {
  blobId: string;
  dataKey: Buffer;
  size: number;
  sha256: string;
  mimeType: string;
  /** Removes the stored blob again (its key was never stored, so a plain removal is enough). */
  discard(): Promise<void>;
}

const SPACE_CHECK_EVERY = 8 * 1024 * 1024;
// Keep this much free beyond the upload, so a full disk never stops Redis or the logs first.
const DISK_RESERVE = 4 * 1024 * 1024;

/**
 * What this process's uploads in progress have written, per store: MAX_STORAGE_BYTES counts them as
 * they grow (the engines' usage leaves them out until they commit). Without it, uploads running at
 * once each had the whole room left at their start, and together overshot the quota by as many
 * times over. (Replicas do not see each other's uploads in progress: docs/DECISIONS.md.)
 */
interface InFlight {
  /** Ciphertext bytes of the uploads still running. */
  writing: number;
}
const inFlight = new WeakMap<BlobStore, InFlight>();

function inFlightOf(store: BlobStore): InFlight {
  let flight = inFlight.get(store);
  if (flight === undefined) inFlight.set(store, (flight = { writing: 0 }));
  return flight;
}

const isOutOfSpace = (error: unknown) => ['ENOSPC', 'EDQUOT'].includes(String((error as NodeJS.ErrnoException | null)?.code));

/**
 * The one upload pipeline (multipart and raw PUT both use it): plaintext in, ciphertext out to the
 * storage engine under a random blob id, visible only once complete. It hashes and sniffs the type
 * on the fly, stops at MAX_FILE_SIZE, watches free space and the quota, cuts off a stalled body,
 * and removes every trace of the write on any failure. Plaintext never touches disk.
 *
 * It never destroys a request itself: a stall errors the pipeline, which destroys `source`, so a
 * caller whose request must still be answered passes a stream of its own (receive-upload.ts).
 */
export async function storeEncrypted(options: {
  source: Readable;
  store: BlobStore;
  blobId: string;
  limits: StoreLimits;
  /** The content's type when the server built the content itself (a drop's archive): not sniffed or checked. */
  knownType?: string;
}): Promise<StoredBlob> {
  const { source, store, blobId, limits } = options;
  const dataKey = generateDataKey();
  const hash = createHash('sha256');
  let size = 0;
  let sniffed: Buffer[] = [];
  let sniffedBytes = 0;
  let mimeType: string | null = options.knownType ?? null;
  let nextSpaceCheck = SPACE_CHECK_EVERY;
  let stallTimer: NodeJS.Timeout | undefined;
  // The quota, checked on every chunk against the ciphertext the plaintext so far becomes (so a body
  // of unknown length, multipart or chunked, cannot pass it either): the engine's usage as it is now
  // (cached for a moment, its own commits and removals counted at once), and what this process's
  // uploads in progress have written, this one's included.
  const flight = inFlightOf(store);
  let reserved = 0;
  const reserve = (bytes: number) => {
    flight.writing += bytes - reserved;
    reserved = bytes;
  };
  const checkRoom = async () => {
    reserve(ciphertextSize(size));
    if (limits.maxStorageBytes === undefined) return;
    const used = await usedBytes(store);
    if (used + flight.writing > limits.maxStorageBytes + (limits.reclaims ?? 0)) {
      reserve(0); // at once: an upload running beside this one may still fit without it
      throw insufficientStorage();
    }
  };

  const inspectChunk = async (chunk: Buffer) => {
    armStall();
    size += chunk.length;
    if (size > limits.maxFileSize) throw fileTooLarge(limits.maxFileSize);
    await checkRoom();
    hash.update(chunk);
    if (mimeType === null) {
      sniffed.push(chunk);
      sniffedBytes += chunk.length;
      if (sniffedBytes >= SNIFF_BYTES) await decideType();
    }
    if (size >= nextSpaceCheck) {
      nextSpaceCheck += SPACE_CHECK_EVERY;
      await checkDisk(store, SPACE_CHECK_EVERY); // the quota is checked on every chunk (checkRoom)
    }
  };

  const inspect = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      inspectChunk(chunk).then(
        () => done(null, chunk),
        (error: unknown) => done(error as Error),
      );
    },
    flush(done) {
      (mimeType === null ? decideType() : Promise.resolve()).then(checkRoom).then(
        () => done(),
        (error: unknown) => done(error as Error),
      );
    },
  });

  async function decideType() {
    const sample = Buffer.concat(sniffed).subarray(0, SNIFF_BYTES);
    sniffed = [];
    mimeType = await detectType(sample);
    if (!isAllowedType(mimeType, limits.allowedMimeTypes)) throw unsupportedMediaType(mimeType);
  }

  // A body that sends nothing for stallMs is cut off (SPEC §4.7): the pipeline fails with 408, and
  // the caller still owns its request to answer (destroying a raw PUT's request would close the socket).
  const armStall = () => {
    clearTimeout(stallTimer);
    stallTimer = setTimeout(() => inspect.destroy(uploadStalled()), limits.stallMs);
  };
  armStall();

  const encrypt = createEncryptStream({ dataKey, blobId });
  const writer = store.create(blobId);
  // pipeline() destroys every stream with the first error, so only the first 'error' event says where
  // it came from: a failure of the store is a 503 (or 507 when it is full), never the client's.
  let failedFirst: 'store' | 'body' | null = null;
  for (const stream of [source, inspect, encrypt]) stream.prependListener('error', () => (failedFirst ??= 'body'));
  writer.stream.prependListener('error', () => (failedFirst ??= 'store'));
  try {
    await pipeline(source, inspect, encrypt, writer.stream);
    failedFirst = 'store'; // only commit() can fail from here on
    await writer.commit();
    reserve(0); // the engine's usage has it now
  } catch (error) {
    // The original error is the answer; a failing clean-up must not replace it (the sweep and the
    // store's lifecycle rule take what is left).
    await writer.abort().catch(() => undefined);
    if (isOutOfSpace(error)) throw insufficientStorage(error);
    if (failedFirst === 'store' && !(error instanceof AppError)) throw storageUnavailable(error);
    throw error;
  } finally {
    clearTimeout(stallTimer);
    reserve(0);
  }
  return {
    blobId,
    dataKey,
    size,
    sha256: hash.digest('hex'),
    mimeType: mimeType ?? 'application/octet-stream',
    discard: () => writer.abort(),
  };
}

/**
 * What can refuse an upload before its body is read, and before it waits for the KDF: a declared
 * size over MAX_FILE_SIZE (413), or no room for it on the disk or under the quota (507).
 */
export async function checkBeforeBody(
  store: BlobStore,
  limits: Pick<StoreLimits, 'maxFileSize' | 'maxStorageBytes'>,
  expectedSize: number | undefined,
): Promise<void> {
  if (expectedSize !== undefined && expectedSize > limits.maxFileSize) throw fileTooLarge(limits.maxFileSize);
  await checkSpace(store, limits, expectedSize ?? 0);
}

async function checkSpace(store: BlobStore, limits: Pick<StoreLimits, 'maxStorageBytes'>, incoming: number): Promise<void> {
  await checkDisk(store, incoming);
  if (limits.maxStorageBytes !== undefined && (await usedBytes(store)) + inFlightOf(store).writing + incoming > limits.maxStorageBytes)
    throw insufficientStorage();
}

async function checkDisk(store: BlobStore, incoming: number): Promise<void> {
  const free = await store.freeBytes().catch((error: unknown) => {
    throw storageUnavailable(error);
  });
  if (free < incoming + DISK_RESERVE) throw insufficientStorage();
}

/** The engine's usage (cached by the engine); a store that cannot tell is unavailable (503). */
function usedBytes(store: BlobStore): Promise<number> {
  return store.usedBytes().catch((error: unknown) => {
    throw storageUnavailable(error);
  });
}
