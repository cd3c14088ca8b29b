import type { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import type { RuntimeConfig } from '../config.js';
import { decryptMetadata, encryptMetadata, generateDeleteToken, hashDeleteToken, unwrapDataKey, wrapDataKey, type FileMetadata, type Kdf } from '../crypto/keys.js';
import { createDecryptStream } from '../crypto/stream.js';
import { isIntegrityCheckFailed } from '../crypto/crypto.errors.js';
import { generatePassphrase } from '../diceware/passphrase.js';
import { normaliseKey, type Wordlist } from '../diceware/wordlist.js';
import type { Enqueue } from '../jobs/enqueue.js';
import type { Logger } from '../shared/logger.js';
import { confirmReplicated, REPLICATION_WAIT_MS } from '../shared/redis.js';
import { serviceUnavailable } from '../http/errors.js';
import { fileGone, fileNotFound, invalidDeleteToken, previewAlreadyUsed } from './files.errors.js';
import type { FileRecord, FilesRepository, Lookup } from './files.repository.js';
import type { Storage } from './storage.repository.js';
import type { StoredBlob } from './encrypting-store.js';

export interface FilesDeps {
  config: RuntimeConfig;
  kdf: Kdf;
  files: FilesRepository;
  /** The connection the repository writes on (WAIT covers that connection's writes). */
  redis: Redis;
  storage: Storage;
  wordlist: Wordlist;
  enqueue: Enqueue;
  log: Logger;
  now: () => Date;
  /** Called for every lookup of a key that matches no file (brute-force accounting). */
  onFailedLookup(): Promise<void>;
}

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

const MAX_DRAWS = 5;

/** Registers a stored blob: a fresh passphrase, its record (written last), the expire job. */
export async function registerUpload(deps: FilesDeps, input: { stored: StoredBlob; filename: string; expiryMinutes: number; uses: number; words: number }): Promise<UploadedFile> {
  const { stored } = input;
  const created = deps.now();
  const expires = new Date(created.getTime() + Math.round(input.expiryMinutes * 60_000));
  const deleteToken = generateDeleteToken();
  try {
    for (let draw = 0; draw < MAX_DRAWS; draw += 1) {
      const key = generatePassphrase(deps.wordlist, input.words);
      const { lookupId, kek } = await deps.kdf.derive(key);
      const record: FileRecord = {
        blob: stored.blobId,
        wk: wrapDataKey({ dataKey: stored.dataKey, kek, lookupId }).toString('base64'),
        meta: encryptMetadata({ dataKey: stored.dataKey, blobId: stored.blobId, metadata: { filename: input.filename, mimeType: stored.mimeType, sha256: stored.sha256 } }).toString('base64'),
        uses: input.uses,
        totalUses: input.uses,
        previewed: false,
        size: stored.size,
        created: created.getTime(),
        expires: expires.getTime(),
        dt: hashDeleteToken(deleteToken),
      };
      // A fresh draw if a live record (or a recent tombstone) already uses this passphrase.
      if (!(await deps.files.store(lookupId, record))) continue;
      await confirmReplicated(deps.redis, { timeoutMs: REPLICATION_WAIT_MS }); // acknowledged only once a replica has it (SPEC §10.3)
      await deps.enqueue('expire', { blobId: stored.blobId }, { delayMs: expires.getTime() - created.getTime() });
      deps.log.info('file_uploaded', { size: stored.size, uses: input.uses, expiry_minutes: input.expiryMinutes, mime_type: stored.mimeType });
      return { key, deleteToken, expiresAt: expires, createdAt: created, uses: input.uses, filename: input.filename, mimeType: stored.mimeType, size: stored.size, sha256: stored.sha256 };
    }
    throw serviceUnavailable(new Error('no free passphrase after several draws'));
  } catch (error) {
    // The record is written last, so the blob has no owner: remove it now rather than at the sweep.
    await deps.storage.discard(stored.blobId);
    throw error;
  }
}

interface Resolved {
  lookupId: string;
  kek: Buffer;
  key: string;
}

/** Key input → derived ids; a key that is not wordlist words is a 404 without KDF work. */
async function resolveKey(deps: FilesDeps, input: unknown): Promise<Resolved> {
  const key = normaliseKey(input, deps.wordlist);
  if (key === null) {
    await deps.onFailedLookup();
    throw fileNotFound();
  }
  const { lookupId, kek } = await deps.kdf.derive(key);
  return { lookupId, kek, key };
}

async function found<T>(deps: FilesDeps, lookup: Lookup<T> | { kind: 'used' }): Promise<{ record: FileRecord; extra: T }> {
  if (lookup.kind === 'found') return lookup;
  if (lookup.kind === 'gone') throw fileGone(lookup.reason);
  if (lookup.kind === 'used') throw previewAlreadyUsed();
  await deps.onFailedLookup();
  throw fileNotFound();
}

function openRecord(deps: FilesDeps, resolved: Resolved, record: FileRecord): { dataKey: Buffer; metadata: FileMetadata } {
  const dataKey = unwrapDataKey({ wrapped: Buffer.from(record.wk, 'base64'), kek: resolved.kek, lookupId: resolved.lookupId });
  const metadata = decryptMetadata({ dataKey, blobId: record.blob, sealed: Buffer.from(record.meta, 'base64') });
  return { dataKey, metadata };
}

export interface FileView {
  key: string;
  record: FileRecord;
  metadata: FileMetadata;
}

export async function fileStatus(deps: FilesDeps, input: unknown): Promise<FileView> {
  const resolved = await resolveKey(deps, input);
  const { record } = await found(deps, await deps.files.peek(resolved.lookupId, deps.now().getTime()));
  return { key: resolved.key, record, metadata: openRecord(deps, resolved, record).metadata };
}

export async function filePreview(deps: FilesDeps, input: unknown): Promise<FileView> {
  const resolved = await resolveKey(deps, input);
  const { record } = await found(deps, await deps.files.preview(resolved.lookupId, deps.now().getTime()));
  return { key: resolved.key, record, metadata: openRecord(deps, resolved, record).metadata };
}

export async function deleteFile(deps: FilesDeps, input: unknown, token: string | undefined): Promise<void> {
  const resolved = await resolveKey(deps, input);
  const result = await deps.files.remove(resolved.lookupId, hashDeleteToken(token ?? ''), deps.now().getTime());
  if (result.kind === 'forbidden') throw invalidDeleteToken();
  if (result.kind !== 'deleted') await found(deps, result);
  else {
    await deps.enqueue('shred', { blobId: result.blob, reason: 'deleted' });
    deps.log.info('file_deleted', {});
  }
}

export interface Download {
  metadata: FileMetadata;
  size: number;
  remainingUses: number;
  /** Verified plaintext; the first chunk has already been authenticated. */
  body: Readable;
  first: Buffer | null;
  /** Call once the response has ended, sent or aborted: a burned blob then goes to the janitor. */
  finished(): Promise<void>;
}

/**
 * Claims a use atomically before streaming, then opens and authenticates the first chunk. If the
 * server fails before the first byte, the use is refunded (a burned record is restored); after
 * that, nothing is refunded, even when the client aborts.
 */
export async function startDownload(deps: FilesDeps, input: unknown): Promise<Download> {
  const resolved = await resolveKey(deps, input);
  const { record, extra } = await found(deps, await deps.files.claim(resolved.lookupId, deps.now().getTime()));
  try {
    const { dataKey, metadata } = openRecord(deps, resolved, record);
    const blob = deps.storage.openBlob(record.blob);
    const body = blob.pipe(createDecryptStream({ dataKey, blobId: record.blob }));
    // pipe() does not forward errors: a missing or unreadable blob must fail the body too.
    blob.once('error', (error) => body.destroy(error));
    body.once('close', () => blob.destroy());
    const first = await firstChunk(body);
    return {
      metadata,
      size: record.size,
      remainingUses: record.uses,
      body,
      first,
      finished: async () => {
        if (!extra.burned) return;
        deps.log.info('file_burned', { size: record.size });
        await deps.enqueue('shred', { blobId: record.blob, reason: 'burned' });
      },
    };
  } catch (error) {
    await deps.files.refund(resolved.lookupId, record).catch((refundError: unknown) => deps.log.error('refund_failed', { error: (refundError as Error).message }));
    if (isIntegrityCheckFailed(error)) deps.log.error('integrity_check_failed', { reason: error.reason, bytes_released: error.bytesReleased });
    throw error;
  }
}

/** Resolves with the first verified chunk (null for an empty file), or rejects with the stream's error. */
function firstChunk(stream: Readable): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const onReadable = () => {
      const chunk = stream.read() as Buffer | null;
      if (chunk === null) return;
      cleanup();
      resolve(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(null);
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const cleanup = () => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('error', onError);
  });
}

