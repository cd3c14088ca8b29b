import { pipeline, type Readable } from 'node:stream';
import { keepLease, leaseUntil, newLeaseId, type HeldLease } from '../blobs/lease.js';
import { isIntegrityCheckFailed } from '../crypto/crypto.errors.js';
import type { FileMetadata } from '../crypto/keys.js';
import { createDecryptStream } from '../crypto/stream.js';
import type { FileRecord, GoneReason } from '../files/files.repository.js';
import type { Requester } from '../kdf/fair-scheduler.js';
import { openRecord, resolveKey, type FilesDeps, type ResolvedKey } from '../files/files.usecases.js';

export interface Download {
  metadata: FileMetadata;
  size: number;
  remainingUses: number;
  /** The first verified chunk (null for an empty file); `body` continues after it. */
  first: Buffer | null;
  /** Verified plaintext: every chunk is released only after its tag verified. */
  body: Readable;
  /** Before the first byte has gone out, when the server cannot answer after all: gives the use back and closes everything. */
  cancel(): Promise<void>;
  /** Once the response has ended (sent, aborted or failed): ends the lease; unprotected bytes then go to the janitor. */
  finish(): Promise<void>;
}

export type DownloadStart = { kind: 'ready'; download: Download } | { kind: 'gone'; reason: GoneReason } | { kind: 'missing' } | { kind: 'client_gone' };

/**
 * A download (SPEC §3, §10.1): claims a use and leases the blob in one atomic step, then opens and
 * authenticates the first chunk. If the server fails before the first byte, exactly this claim's
 * use is given back and every handle is closed; after that nothing is refunded, even when the
 * client aborts. A client that left while its key was being derived claims nothing. The lease keeps
 * the bytes from the janitor until the download ends, even if the file is burned, deleted or
 * expires meanwhile, for at most MAX_DOWNLOAD_SECONDS.
 */
export async function startDownload(deps: FilesDeps, input: { key: unknown; who: Requester; signal: AbortSignal }): Promise<DownloadStart> {
  const resolved = await resolveKey(deps, input);
  if (!resolved) return { kind: 'missing' };
  if (input.signal.aborted) return { kind: 'client_gone' };

  const startedAt = deps.now().getTime();
  const maxMs = deps.config.maxDownloadSeconds * 1000;
  const leaseId = newLeaseId();
  const claim = await deps.files.claim(resolved.lookupId, { now: startedAt, leaseId, leaseUntil: leaseUntil({ startedAt, now: startedAt, maxMs }) });
  if (claim.kind !== 'found') return claim;

  const { record } = claim;
  const lease = keepLease({ guard: deps.blobs.guard, blobId: record.blob, id: leaseId, startedAt, maxMs, now: () => deps.now().getTime(), log: deps.log });
  const burned = claim.extra.burned;
  const ended = () => endLease(deps, record.blob, lease, burned);
  let body: Readable | undefined;
  const cancel = async () => {
    body?.destroy();
    await refund(deps, resolved, { record, burned });
    await ended();
  };
  try {
    if (burned) {
      // Queued at once so that no crash can forget it; the janitor waits while a lease holds.
      await enqueueShred(deps, record.blob, 'burned');
    }
    const { dataKey, metadata } = openRecord(resolved, record);
    const ciphertext = await deps.blobs.store.read(record.blob);
    // pipeline() destroys both streams when either fails or the consumer destroys the body, which
    // closes the blob's handle: nothing stays open after a failure.
    body = pipeline(ciphertext, createDecryptStream({ dataKey, blobId: record.blob }), () => undefined);
    const first = await firstChunk(body);
    const finish = async () => {
      if (burned) deps.log.info('file_burned', { size: record.size });
      await ended();
    };
    return { kind: 'ready', download: { metadata, size: record.size, remainingUses: record.uses, first, body, cancel, finish } };
  } catch (error) {
    await cancel();
    if (isIntegrityCheckFailed(error)) deps.log.error('integrity_check_failed', { reason: error.reason, bytes_released: error.bytesReleased });
    throw error;
  }
}

async function refund(deps: FilesDeps, resolved: ResolvedKey, claimed: { record: FileRecord; burned: boolean }): Promise<void> {
  try {
    const given = await deps.files.refund(resolved.lookupId, { ...claimed, now: deps.now().getTime() });
    deps.log.info('download_refunded', { restored: given });
  } catch (error) {
    deps.log.error('refund_failed', { error: (error as Error).message });
  }
}

/** Ends a download's lease; when nothing protects the blob any more, its bytes go to the janitor now. */
async function endLease(deps: FilesDeps, blobId: string, lease: HeldLease, burned: boolean): Promise<void> {
  try {
    const left = await lease.release();
    if (left.until === null) await enqueueShred(deps, blobId, burned ? 'burned' : 'released', lease.id);
  } catch (error) {
    // The lease ends by itself within its TTL, and the shred queued at burn or delete waits for it.
    deps.log.warn('lease_release_failed', { error: (error as Error).message });
  }
}

function enqueueShred(deps: FilesDeps, blobId: string, reason: 'burned' | 'released', lease?: string): Promise<void> {
  return deps.enqueue('shred', { blobId, reason, ...(lease ? { lease } : {}) });
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
