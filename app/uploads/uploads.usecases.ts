import type { Readable } from 'node:stream';
import { newBlobId } from '../blobs/blob-id.js';
import { takeLease } from '../blobs/lease.js';
import { encryptMetadata, generateDeleteToken, hashDeleteToken, wrapDataKey } from '../crypto/keys.js';
import { generatePassphrase } from '../diceware/passphrase.js';
import type { FileRecord } from '../files/files.repository.js';
import type { FilesDeps } from '../files/files.usecases.js';
import { serviceUnavailable } from '../http/errors.js';
import { confirmReplicated, REPLICATION_WAIT_MS } from '../shared/redis.js';
import { storeEncrypted, type StoredBlob } from './encrypting-store.js';
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
}

/** A blob that is stored but has no record yet: register it, or discard it. */
export interface PendingUpload {
  stored: StoredBlob;
  /** Writes the record under a fresh passphrase; on any failure the blob is removed. */
  register(input: { filename: string; options: UploadOptions }): Promise<UploadedFile>;
  discard(): Promise<void>;
}

/** A passphrase collides with a live record or tombstone about never; give up after a few draws. */
const MAX_DRAWS = 5;

/**
 * Receives an upload's body (SPEC §3): encrypted as it streams into the storage engine. A lease
 * keeps the partial blob from the janitor for as long as it is written and until its record
 * exists. Every failure leaves nothing behind.
 */
export async function receiveUpload(deps: FilesDeps, input: { source: Readable; expectedSize?: number }): Promise<PendingUpload> {
  const { config } = deps;
  const blobId = newBlobId();
  const lease = await takeLease({ guard: deps.blobs.guard, blobId, maxMs: config.maxDownloadSeconds * 1000, now: () => deps.now().getTime(), log: deps.log });
  let stored: StoredBlob;
  try {
    stored = await storeEncrypted({
      source: input.source,
      store: deps.blobs.store,
      blobId,
      limits: { maxFileSize: config.maxFileSize, maxStorageBytes: config.maxStorageBytes, allowedMimeTypes: config.allowedMimeTypes, stallMs: config.uploadStallSeconds * 1000 },
      ...(input.expectedSize !== undefined ? { expectedSize: input.expectedSize } : {}),
    });
  } catch (error) {
    await lease.release().catch(() => undefined); // it ends by itself within its TTL
    throw error;
  }

  let settled: Promise<unknown> | null = null;
  const discard = async () => {
    await stored.discard();
    await lease.release().catch(() => undefined);
  };
  return {
    stored,
    discard: () => (settled ??= discard()) as Promise<void>,
    register: async ({ filename, options }) => {
      try {
        const uploaded = await registerUpload(deps, { stored, filename, options });
        settled = lease.release().catch(() => undefined); // the record's own protection holds the blob now
        return uploaded;
      } catch (error) {
        settled ??= discard();
        await settled;
        throw error;
      }
    },
  };
}

/** The expire job, a fresh passphrase, and the record, written last. */
async function registerUpload(deps: FilesDeps, input: { stored: StoredBlob; filename: string; options: UploadOptions }): Promise<UploadedFile> {
  const { stored, options } = input;
  const created = deps.now();
  const expires = new Date(created.getTime() + Math.round(options.expiry * 60_000));
  const deleteToken = generateDeleteToken();
  // Queued before the record exists, so no record can ever lack its expire job (a job without a
  // record finds nothing to keep and shreds nothing live).
  await deps.enqueue('expire', { blobId: stored.blobId }, { delayMs: expires.getTime() - created.getTime() });
  for (let draw = 0; draw < MAX_DRAWS; draw += 1) {
    const key = generatePassphrase(deps.wordlist, options.words);
    const { lookupId, kek } = await deps.kdf.derive(key);
    const record: FileRecord = {
      blob: stored.blobId,
      wk: wrapDataKey({ dataKey: stored.dataKey, kek, lookupId }).toString('base64'),
      meta: encryptMetadata({ dataKey: stored.dataKey, blobId: stored.blobId, metadata: { filename: input.filename, mimeType: stored.mimeType, sha256: stored.sha256 } }).toString('base64'),
      uses: options.uses,
      totalUses: options.uses,
      previewed: false,
      size: stored.size,
      created: created.getTime(),
      expires: expires.getTime(),
      dt: hashDeleteToken(deleteToken),
    };
    // A fresh draw if a live record (or a recent tombstone) already uses this passphrase.
    if (!(await deps.files.store(lookupId, record))) continue;
    await confirmReplicated(deps.redis, { timeoutMs: REPLICATION_WAIT_MS }); // acknowledged only once a replica has it (SPEC §10.3)
    deps.log.info('file_uploaded', { size: stored.size, uses: options.uses, expiry_minutes: options.expiry, mime_type: stored.mimeType });
    return { key, deleteToken, expiresAt: expires, createdAt: created, uses: options.uses, filename: input.filename, mimeType: stored.mimeType, size: stored.size, sha256: stored.sha256 };
  }
  throw serviceUnavailable(new Error('no free passphrase after several draws'));
}
