import type { Readable, Writable } from 'node:stream';

/**
 * Where a blob's ciphertext lives: the storage engine (SPEC §10.3). Two engines implement it, `fs`
 * (STORAGE_PATH/TEMP_PATH) and `s3` (any S3-compatible store). Everything above this interface
 * (upload, download, resume, shred, sweep) runs unchanged on either; liveness and leases live in
 * Redis (blobs.repository.ts), never in the engine. Only ciphertext ever crosses this interface.
 */
export interface BlobStore {
  readonly engine: 'fs' | 's3';

  /** Starts writing a new blob. Nothing is visible under `blobId` until `commit()`. */
  create(blobId: string): BlobWriter;

  /**
   * Ciphertext of a committed blob, whole or the inclusive byte range `[start, end]`. Rejects with
   * an error whose `code` is 'ENOENT' when there is no such blob. The caller destroys the stream
   * when it is done or fails, which releases every handle (fd, socket).
   */
  read(blobId: string, range?: ByteRange): Promise<Readable>;

  /**
   * Destroys a blob's bytes and any partial of it: fs overwrites in place (SECURE_SHRED_PASSES,
   * fsync) and unlinks, but only unlinks a file with other hard links; s3 deletes the object and
   * aborts any multipart upload of it. Idempotent: `found` is false when nothing was there.
   */
  destroy(blobId: string, reason: string): Promise<DestroyResult>;

  /** Every object the engine holds (blobs, partials, incomplete uploads), for the sweep; streamed. */
  list(): AsyncIterable<StoredEntry>;

  /** Destroys one entry that `list()` returned (same guarantees as `destroy`). */
  destroyEntry(entry: StoredEntry, reason: string): Promise<DestroyResult>;

  /** Bytes a new upload may still use on the medium; Infinity when the engine has no such limit (s3). */
  freeBytes(): Promise<number>;

  /**
   * Bytes held by blobs and partials, for MAX_STORAGE_BYTES (may be cached for a short while), except
   * the uploads this process is writing now: the upload pipeline counts those as they grow.
   */
  usedBytes(): Promise<number>;

  /** Throws when the store cannot be used now (health, start-up); cheap enough for every health check. */
  check(): Promise<void>;

  /** Releases clients and timers. */
  close(): Promise<void>;
}

export interface ByteRange {
  start: number;
  /** Inclusive, as in HTTP ranges. */
  end: number;
}

export interface BlobWriter {
  /** Ciphertext is written here; backpressure is honoured, and a store-side failure errors the stream. */
  readonly stream: Writable;
  /** After `stream` has finished: makes the blob readable under its id (fs rename, s3 complete). */
  commit(): Promise<void>;
  /** After any failure: removes every trace of this write (partial file, multipart upload). Idempotent. */
  abort(): Promise<void>;
}

export interface DestroyResult {
  found: boolean;
  /** Ciphertext bytes destroyed (0 when not found or unknown). */
  size: number;
}

export interface StoredEntry {
  /** The blob id this entry belongs to, or null when its name cannot be one (a stranger in our space). */
  blobId: string | null;
  /** `blob`: a committed blob; `partial`: an upload that never committed (fs partial, s3 multipart upload). */
  kind: 'blob' | 'partial';
  /** Last modification (fs mtime, s3 LastModified or the multipart upload's Initiated), ms since epoch. */
  modifiedMs: number;
  size: number;
  /** Engine-private handle for destroyEntry (a path, an object key, an upload id). */
  ref: string;
}

/**
 * The engines' code for "the store failed or refused" (s3-store.ts): the error handler answers it
 * with 503 SERVICE_UNAVAILABLE (SPEC §3: storage unreachable), never as a client's fault or a bug.
 */
export const STORE_FAILED = 'ESTORE';

/** A failure of the storage engine itself, as an ESTORE error (an engine's own ESTORE error unchanged). */
export function storageUnavailable(error: unknown): Error {
  if ((error as NodeJS.ErrnoException | null)?.code === STORE_FAILED) return error as Error;
  const detail = error instanceof Error ? `${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message}` : String(error);
  return Object.assign(new Error(`storage failed: ${detail}`, { cause: error }), { code: STORE_FAILED });
}
