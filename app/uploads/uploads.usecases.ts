import type { Readable } from 'node:stream';
import { newBlobId } from '../blobs/blob-id.js';
import { takeLease, type HeldLease } from '../blobs/lease.js';
import { encryptMetadata, generateDeleteToken, hashDeleteToken, wrapDataKey, type FileEntry } from '../crypto/keys.js';
import { generatePassphrase } from '../diceware/passphrase.js';
import type { Requester } from '../kdf/fair-scheduler.js';
import type { PooledKeys } from '../kdf/key-pool.js';
import type { FileRecord } from '../files/files.repository.js';
import type { FilesDeps } from '../files/files.usecases.js';
import { serviceUnavailable } from '../http/errors.js';
import { maxRequestMs } from '../http/timeouts.js';
import { checkBeforeBody, storeEncrypted, type StoredBlob } from './encrypting-store.js';
import type { UploadOptions } from './uploads.models.js';

export interface UploadedFile {
  key: string;
  deleteToken: string;
  expiresAt: Date;
  createdAt: Date;
  uses: number;
  filename: string;
  mimeType: string;
  size: number;
  sha256: string;
  /** A drop's entries (absent for a single file). */
  files?: FileEntry[];
}

/** A blob that is stored but has no record yet: register it, or discard it. */
export interface PendingUpload {
  stored: StoredBlob;
  /** Writes the record under a fresh passphrase; on any failure the blob is removed. */
  register(input: { filename: string; options: UploadOptions; files?: FileEntry[] }): Promise<UploadedFile>;
  discard(): Promise<void>;
  /**
   * Gives up this upload's admission (its drawn keys) to another upload of the same request:
   * a drop's archive takes over from its first file, which is then only discarded (SPEC §10.7).
   */
  handOver(): UploadAdmission;
}

/** The keys an upload drew before its body was read: a pooled entry, or its own derivation. */
interface UploadAdmission {
  drawn: DrawnKeys | null;
}

/** A passphrase with its lookup id and KEK, drawn from the key pool or derived for this upload. */
type DrawnKeys = PooledKeys;

/** A drop's own type (SPEC §10.7), whatever its first entry would make a sniffer say (a docx, an epub). */
const ARCHIVE_TYPE = 'application/zip';

/** A passphrase collides with a live record or tombstone about never; give up after a few draws. */
const MAX_DRAWS = 5;

/**
 * Receives an upload's body (SPEC §3): encrypted as it streams into the storage engine. Before a
 * byte of it is read, the upload gets its passphrase's keys: a pre-derived entry of the key pool
 * when it asks for the pool's word count (SPEC §10.5), else a derivation in `who`'s fair turn — or a
 * 503 at once, not after the body. While it waits for the KDF its body stays in the kernel: nothing
 * is read, stored or leased, so a waiting upload holds only its socket, and one the KDF cannot
 * serve has stored nothing. A lease keeps the partial blob from the janitor while it is written
 * and until its record exists. Every failure leaves nothing behind.
 */
export async function receiveUpload(
  deps: FilesDeps,
  input: {
    source: Readable;
    expectedSize?: number;
    who: Requester;
    words: number;
    /**
     * A drop's archive, built by the server: admitted already (its first file's), its own size bound,
     * no type sniffing. `reclaims`: the stored bytes it replaces (the first file's blob, stored until
     * the archive is, then discarded), which MAX_STORAGE_BYTES must not count twice.
     */
    archive?: { maxBytes: number; admitted: UploadAdmission; reclaims: number };
  },
): Promise<PendingUpload> {
  const { config } = deps;
  const limits = {
    maxFileSize: input.archive?.maxBytes ?? config.maxFileSize,
    maxStorageBytes: config.maxStorageBytes,
    ...(input.archive ? { reclaims: input.archive.reclaims } : {}),
    allowedMimeTypes: input.archive ? [] : config.allowedMimeTypes,
    stallMs: config.uploadStallSeconds * 1000,
  };
  let drawn = input.archive ? input.archive.admitted.drawn : null;
  const forget = () => drawn?.kek.fill(0);
  const blobId = newBlobId();
  let lease: HeldLease;
  try {
    await checkBeforeBody(deps.blobs.store, limits, input.expectedSize);
    if (!input.archive) drawn = await drawKeys(deps, input.words, input.who);
    lease = await takeLease({
      guard: deps.blobs.guard,
      blobId,
      // As long as the request may run, not MAX_DOWNLOAD_SECONDS: past that cap an s3 multipart
      // upload (dated by its start) would look abandoned to the sweep while its body still arrives.
      maxMs: maxRequestMs(config),
      now: () => deps.now().getTime(),
      log: deps.log,
    });
  } catch (error) {
    forget();
    throw error;
  }
  let stored: StoredBlob;
  try {
    stored = await storeEncrypted({
      source: input.source,
      store: deps.blobs.store,
      blobId,
      limits,
      ...(input.archive ? { knownType: ARCHIVE_TYPE } : {}),
    });
  } catch (error) {
    forget();
    await lease.release().catch(() => undefined); // it ends by itself within its TTL
    throw error;
  }

  let settled: Promise<unknown> | null = null;
  const discard = async () => {
    forget();
    await stored.discard();
    await lease.release().catch(() => undefined);
  };
  return {
    stored,
    discard: () => (settled ??= discard()) as Promise<void>,
    handOver: () => {
      const admission = { drawn };
      drawn = null; // no longer ours to use or wipe
      return admission;
    },
    register: async ({ filename, options, files }) => {
      try {
        const uploaded = await registerUpload(deps, {
          stored,
          filename,
          options,
          who: input.who,
          drawn,
          leaseId: lease.id,
          ...(files ? { files } : {}),
        });
        // The record's own protection holds the blob now: the store script ended the lease.
        lease.stopRenewing();
        settled = Promise.resolve();
        // Wrapped in the record, the data key is needed no more in this process.
        stored.dataKey.fill(0);
        return uploaded;
      } catch (error) {
        settled ??= discard();
        await settled;
        throw error;
      }
    },
  };
}

/** The expire job, a passphrase (the one drawn before the body first, when its word count fits), and the record, written last. */
async function registerUpload(
  deps: FilesDeps,
  input: {
    stored: StoredBlob;
    filename: string;
    options: UploadOptions;
    who: Requester;
    drawn: DrawnKeys | null;
    /** The upload's lease, which the record's protection replaces as it is written. */
    leaseId: string;
    files?: FileEntry[];
  },
): Promise<UploadedFile> {
  const { stored, options, files } = input;
  const created = deps.now();
  const expires = new Date(created.getTime() + Math.round(options.expiry * 60_000));
  const deleteToken = generateDeleteToken();
  // Queued before the record exists, so no record can ever lack its expire job (a job without a
  // record finds nothing to keep and shreds nothing live).
  await deps.enqueue('expire', { blobId: stored.blobId }, { delayMs: expires.getTime() - created.getTime() });
  // A `words` field sent after the file part may ask for another count than the one drawn for.
  let drawn = input.drawn && input.drawn.passphrase.split('-').length === options.words ? input.drawn : null;
  if (input.drawn && !drawn) input.drawn.kek.fill(0);
  for (let draw = 0; draw < MAX_DRAWS; draw += 1) {
    const { passphrase: key, lookupId, kek } = drawn ?? (await derived(deps, options.words, input.who));
    drawn = null;
    // Each KEK wraps one data key and is then wiped: a lookup derives it again from the passphrase.
    const wk = wrapDataKey({ dataKey: stored.dataKey, kek, lookupId }).toString('base64');
    kek.fill(0);
    const record: FileRecord = {
      blob: stored.blobId,
      wk,
      meta: encryptMetadata({
        dataKey: stored.dataKey,
        blobId: stored.blobId,
        metadata: { filename: input.filename, mimeType: stored.mimeType, sha256: stored.sha256, ...(files ? { files } : {}) },
      }).toString('base64'),
      uses: options.uses,
      totalUses: options.uses,
      previewed: false,
      size: stored.size,
      created: created.getTime(),
      expires: expires.getTime(),
      dt: hashDeleteToken(deleteToken),
    };
    // A fresh draw if a live record (or a recent tombstone) already uses this passphrase. A store
    // whose answer was lost (a timeout, a dropped connection) may have run: its record goes, as below,
    // before the blob it names is discarded.
    const written = await deps.files.store(lookupId, record, input.leaseId).catch(async (error: unknown) => {
      await deps.files.remove(lookupId, record.dt, deps.now().getTime()).catch(() => undefined);
      throw error;
    });
    if (!written) continue;
    // Acknowledged only once a replica has the record, when replicas are attached (SPEC §10.3).
    // Unacknowledged, the upload fails (503) and its blob is discarded: its record goes first, as a
    // delete would, so nothing is left that names a blob that no longer exists.
    await deps.files.confirmReplicated().catch(async (error: unknown) => {
      await deps.files.remove(lookupId, record.dt, deps.now().getTime()).catch(() => undefined);
      throw error;
    });
    deps.log.info('file_uploaded', {
      size: stored.size,
      uses: options.uses,
      expiry_minutes: options.expiry,
      mime_type: stored.mimeType,
      ...(files ? { files: files.length } : {}),
    });
    return {
      key,
      deleteToken,
      expiresAt: expires,
      createdAt: created,
      uses: options.uses,
      filename: input.filename,
      mimeType: stored.mimeType,
      size: stored.size,
      sha256: stored.sha256,
      ...(files ? { files } : {}),
    };
  }
  throw serviceUnavailable(new Error('no free passphrase after several draws'));
}

/** The pool's entry when the word count fits and one is ready, else a derivation in `who`'s fair turn (kdfBusy at once when over a cap). */
async function drawKeys(deps: FilesDeps, words: number, who: Requester): Promise<DrawnKeys> {
  return (deps.pool && words === deps.pool.words ? deps.pool.take() : null) ?? derived(deps, words, who);
}

async function derived(deps: FilesDeps, words: number, who: Requester): Promise<DrawnKeys> {
  const passphrase = generatePassphrase(deps.wordlist, words);
  return { passphrase, ...(await deps.kdf.derive(passphrase, who)) };
}
