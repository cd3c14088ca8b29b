import { pipeline, type Readable } from 'node:stream';
import { keepLease, leaseUntil, newLeaseId, type HeldLease } from '../blobs/lease.js';
import { STORE_FAILED, storageUnavailable } from '../blobs/blob-store.js';
import { isIntegrityCheckFailed } from '../crypto/crypto.errors.js';
import { decryptMetadata, type FileMetadata } from '../crypto/keys.js';
import { createRangeDecryptStream, planRange, type RangePlan } from '../crypto/range.js';
import { newResumeCapability, resumeKeys, unwrapResumeKey, wrapResumeKey, type ResumeCapability } from '../crypto/resume.js';
import { ciphertextSize, createDecryptStream, HEADER_LENGTH } from '../crypto/stream.js';
import { downloadNumber, type DownloadEvent, type FileRecord, type GoneReason } from '../files/files.repository.js';
import { openRecord, resolveKey, type FilesDeps, type ResolvedKey } from '../files/files.usecases.js';
import type { LookupResult } from '../files/files.models.js';
import type { Requester } from '../kdf/fair-scheduler.js';
import type { ResumeRecord, ResumeRepository } from './resume.repository.js';

export interface DownloadsDeps extends FilesDeps {
  resumes: ResumeRepository;
}

/** A download on its way out: a whole file (200) or, when resumed, the requested bytes (206). */
export interface Download {
  metadata: FileMetadata;
  /** The file's plaintext size. */
  size: number;
  remainingUses: number | null;
  /** The bytes sent, for a resumed (206) download. */
  range: RangePlan | null;
  /**
   * The resume capability (the strong ETag), or null when RESUME_WINDOW_SECONDS is 0, or when the
   * sender deleted the file while this download was starting (it is served, but nothing resumes it).
   */
  etag: string | null;
  /** The first verified chunk (null when there is nothing to send); `body` continues after it. */
  first: Buffer | null;
  /** Verified plaintext: every chunk is released only after its tag verified. */
  body: Readable;
  /**
   * Before the first byte has gone out, when the server cannot answer after all: gives a claimed use
   * back, removes the resume record its client never saw, and closes everything.
   */
  cancel(): Promise<void>;
  /**
   * Once the response has ended: `complete` when every byte was handed to the connection. Notes the
   * sender's receipt and ends the lease; unprotected bytes then go to the janitor.
   */
  finish(outcome: { complete: boolean }): Promise<void>;
}

/** `Range: bytes=N-`, `bytes=N-M` or `bytes=-M` (the last M bytes), as the route parsed it. */
export type RangeRequest = { start: number; end?: number } | { suffix: number };

/** A request to finish a started download: the capability from If-Range, and the bytes wanted. */
export interface ResumeRequest {
  capability: ResumeCapability;
  range: RangeRequest;
}

export type DownloadStart =
  | { kind: 'ready'; download: Download }
  | { kind: 'gone'; reason: GoneReason }
  | { kind: 'missing' }
  | { kind: 'client_gone' }
  /** A valid capability, but no byte of the file lies in the range asked for (416). */
  | { kind: 'unsatisfiable'; size: number };

/** How long the recipient page's download ticket waits for its GET. */
const TICKET_TTL_MS = 60_000;
/** Binds a ticket's wrapped KEK to its purpose (the wrap binds a resume id and a context string). */
const TICKET_CONTEXT = 'ticket';
/**
 * A burning download writes its resume record a moment after its claim (once the first chunk
 * verifies); its shred runs this long after the window that record opens, so that it finds it over.
 */
const RESUME_RECORD_MARGIN_MS = 1_000;

/**
 * A download by passphrase (SPEC §3, §10.1, §10.2). With a valid resume capability (If-Range) and
 * a Range, the bytes asked for of the download that capability belongs to: a 206 that spends
 * nothing, even when that download burned the file. Otherwise (no capability, another file's, one
 * past its window) a new download: one use claimed and the blob leased in one atomic step, the
 * first chunk opened and authenticated before anything is sent.
 */
export async function downloadByKey(
  deps: DownloadsDeps,
  input: { key: unknown; who: Requester; signal: AbortSignal; resume?: ResumeRequest },
): Promise<DownloadStart> {
  const resolved = await resolveKey(deps, input);
  if (!resolved) return { kind: 'missing' };
  if (input.resume) {
    const resumed = await resumeDownload(deps, { ...input.resume, route: { lookupId: resolved.lookupId } });
    if (resumed) return resumed;
  }
  return claimDownload(deps, { resolved, signal: input.signal, capability: newResumeCapability(), via: 'key' });
}

/**
 * The recipient page's download, in two steps so that the browser can resume it: a POST with the
 * passphrase gets a ticket (the passphrase never enters a URL), and a plain GET of the ticket's URL
 * downloads. The ticket's token is also the download's resume capability, so a browser that lost
 * the connection resumes with Range + If-Range on the same URL. Spends nothing.
 */
export async function createTicket(deps: DownloadsDeps, input: { key: unknown; who: Requester }): Promise<LookupResult<{ token: string }>> {
  const resolved = await resolveKey(deps, input);
  if (!resolved) return { kind: 'missing' };
  const found = await deps.files.peek(resolved.lookupId, deps.now().getTime());
  if (found.kind !== 'found') return found;
  const capability = newResumeCapability();
  const { resumeId, kek } = resumeKeys({ capability, secret: deps.config.secret });
  const wk = wrapResumeKey({ dataKey: resolved.kek, kek, resumeId, blobId: TICKET_CONTEXT }).toString('base64');
  await deps.resumes.storeTicket(resumeId, { lookup: resolved.lookupId, wk }, TICKET_TTL_MS);
  return { kind: 'found', value: { token: capability.token.toString('base64url') } };
}

/**
 * The GET of a ticket's URL: the first one claims the use (the ticket is spent as it is read);
 * later ones with the ticket's ETag in If-Range and a Range finish that download.
 */
export async function downloadByTicket(
  deps: DownloadsDeps,
  input: { capability: ResumeCapability; signal: AbortSignal; range?: RangeRequest },
): Promise<DownloadStart> {
  if (input.range) {
    const resumed = await resumeDownload(deps, { capability: input.capability, range: input.range, route: 'ticket' });
    if (resumed) return resumed;
  }
  const { resumeId, kek } = resumeKeys({ capability: input.capability, secret: deps.config.secret });
  const ticket = await deps.resumes.takeTicket(resumeId);
  if (!ticket) return { kind: 'missing' };
  const passphraseKek = unwrapResumeKey({ wrapped: Buffer.from(ticket.wk, 'base64'), kek, resumeId, blobId: TICKET_CONTEXT });
  return claimDownload(deps, {
    resolved: { key: '', lookupId: ticket.lookup, kek: passphraseKek },
    signal: input.signal,
    capability: input.capability,
    via: 'ticket',
  });
}

/**
 * Claims one use, leases the blob, writes the resume record for `capability`, and opens the first
 * chunk. If the server fails before the first byte, exactly this claim's use is given back, the
 * resume record is removed, and every handle is closed. A client that left while its key was being
 * derived claims nothing.
 */
async function claimDownload(
  deps: DownloadsDeps,
  input: { resolved: ResolvedKey; signal: AbortSignal; capability: ResumeCapability; via: ResumeRecord['via'] },
): Promise<DownloadStart> {
  const { resolved } = input;
  if (input.signal.aborted) return { kind: 'client_gone' };
  const startedAt = deps.now().getTime();
  const maxMs = deps.config.maxDownloadSeconds * 1000;
  const leaseId = newLeaseId();
  const claim = await deps.files.claim(resolved.lookupId, {
    now: startedAt,
    leaseId,
    leaseUntil: leaseUntil({ startedAt, now: startedAt, maxMs }),
  });
  if (claim.kind !== 'found') return claim;

  const { record } = claim;
  const burned = claim.extra.burned;
  const lease = keepLease({
    guard: deps.blobs.guard,
    blobId: record.blob,
    id: leaseId,
    startedAt,
    maxMs,
    now: () => deps.now().getTime(),
    log: deps.log,
  });
  const ended = () => endLease(deps, record.blob, lease, burned ? 'burned' : 'released');
  let body: Readable | undefined;
  // Set once this download's resume record may exist (its write may have failed after Redis ran it).
  let resumeId: string | null = null;
  const cancel = async () => {
    body?.destroy();
    if (resumeId !== null) await removeResumeRecord(deps, resumeId);
    await refund(deps, resolved, { record, burned });
    await ended();
  };
  try {
    if (burned) {
      // Queued at once so that no crash can forget it, to run when the resume window is over; the
      // janitor waits while a lease holds. Each burn has its own job (catalogue.ts).
      await deps.enqueue('shred', { blobId: record.blob, reason: 'burned', burn: leaseId }, { delayMs: burnShredDelayMs(deps.config) });
    }
    const { dataKey, metadata } = openRecord(resolved, record);
    // The exact extent: a reader that knows where the blob ends never allocates a read buffer
    // larger than what is left (a small file's download read 256 KiB buffers for 10 KiB before).
    const ciphertext = await fromStore(
      withinStall(deps.blobs.store.read(record.blob, { start: 0, end: ciphertextSize(record.size) - 1 }), storeStallMs(deps.config)),
    );
    // pipeline() destroys both streams when either fails or the consumer destroys the body, which
    // closes the blob's handle: nothing stays open after a failure.
    body = pipeline(ciphertext, createDecryptStream({ dataKey, blobId: record.blob }), () => undefined);
    const first = await fromStore(firstChunk(body, storeStallMs(deps.config)));
    // Only a download that can send its first byte gets a resume record (a refunded one needs none).
    const n = downloadNumber(record);
    let etag: string | null = null;
    if (deps.config.resumeWindowSeconds > 0) {
      const resume = resumeKeys({ capability: input.capability, secret: deps.config.secret });
      resumeId = resume.resumeId;
      etag = await writeResumeRecord(deps, {
        resume,
        capability: input.capability,
        record,
        dataKey,
        lookupId: resolved.lookupId,
        n,
        via: input.via,
      });
    }
    const finish = async ({ complete }: { complete: boolean }) => {
      if (burned) deps.log.info('file_burned', { size: record.size });
      await endDownload(deps, {
        lookupId: resolved.lookupId,
        n,
        event: complete ? 'completed' : null,
        blobId: record.blob,
        lease,
        reason: burned ? 'burned' : 'released',
      });
    };
    return {
      kind: 'ready',
      download: { metadata, size: record.size, remainingUses: record.uses, range: null, etag, first, body, cancel, finish },
    };
  } catch (error) {
    await cancel();
    if (isIntegrityCheckFailed(error))
      deps.log.error('integrity_check_failed', { reason: error.reason, bytes_released: error.bytesReleased });
    throw error;
  }
}

/**
 * When a burn's shred should first run. With resume on, this download's resume record keeps the
 * bytes for the whole window, so a shred run at once could only put itself back: it waits in the
 * delayed set instead, and the janitor is not woken for every burn. A download that fails before its
 * record is written gives its use back (the record is live again) or, if even that fails, queues a
 * shred for now when its lease ends. With resume off, at once.
 */
function burnShredDelayMs(config: Pick<DownloadsDeps['config'], 'resumeWindowSeconds'>): number {
  return config.resumeWindowSeconds === 0 ? 0 : config.resumeWindowSeconds * 1000 + RESUME_RECORD_MARGIN_MS;
}

/**
 * Wraps the data key for the capability alone and keeps it (and the blob) for RESUME_WINDOW_SECONDS:
 * the ETag. Null when the sender deleted the file since the claim, or an `admin purge` began since:
 * the download started before, so it is served to its end (SPEC §10.1), but the delete or the purge
 * ended every resume window of the file, so it gets none (no ETag, `Accept-Ranges: none`, as with
 * resume off).
 */
async function writeResumeRecord(
  deps: DownloadsDeps,
  input: {
    resume: { resumeId: string; kek: Buffer };
    capability: ResumeCapability;
    record: FileRecord;
    dataKey: Buffer;
    lookupId: string;
    n: number;
    via: ResumeRecord['via'];
  },
): Promise<string | null> {
  const { record, resume } = input;
  const wk = wrapResumeKey({ dataKey: input.dataKey, kek: resume.kek, resumeId: resume.resumeId, blobId: record.blob }).toString('base64');
  const stored = await deps.resumes.store(
    resume.resumeId,
    { blob: record.blob, wk, meta: record.meta, size: record.size, lookup: input.lookupId, n: input.n, via: input.via },
    deps.now().getTime() + deps.config.resumeWindowSeconds * 1000,
    record.epoch ?? '0',
  );
  return stored ? input.capability.etag : null;
}

/** Removes a resume record whose capability never reached its client; a failure leaves it to its TTL. */
async function removeResumeRecord(deps: DownloadsDeps, resumeId: string): Promise<void> {
  try {
    await deps.resumes.remove(resumeId);
  } catch (error) {
    deps.log.warn('resume_record_remove_failed', { error: (error as Error).message });
  }
}

/**
 * Finishes a started download: null when the capability opens nothing (unknown, expired, another
 * file's on a key route, or a passphrase download's on a ticket's address, where no passphrase is
 * asked: its capability alone must not open the file), so the caller serves a new download instead. A file its sender deleted is
 * not resumed. Spends nothing; a lease keeps the bytes while they are sent, taken in one step with
 * the check that the window still keeps them.
 */
async function resumeDownload(
  deps: DownloadsDeps,
  input: ResumeRequest & { route: { lookupId: string } | 'ticket' },
): Promise<DownloadStart | null> {
  if (deps.config.resumeWindowSeconds === 0) return null;
  const { resumeId, kek } = resumeKeys({ capability: input.capability, secret: deps.config.secret });
  const resume = await deps.resumes.get(resumeId);
  if (!resume) return null;
  if (input.route === 'ticket' ? resume.via !== 'ticket' : resume.lookup !== input.route.lookupId) return null;
  const fate = await deps.files.peek(resume.lookup, deps.now().getTime());
  if (fate.kind === 'gone' && fate.reason === 'deleted') return fate;

  const dataKey = unwrapResumeKey({ wrapped: Buffer.from(resume.wk, 'base64'), kek, resumeId, blobId: resume.blob });
  const metadata = decryptMetadata({ dataKey, blobId: resume.blob, sealed: Buffer.from(resume.meta, 'base64') });
  const range = 'suffix' in input.range ? { start: Math.max(0, resume.size - input.range.suffix) } : input.range;
  const plan = 'suffix' in input.range && input.range.suffix === 0 ? null : planRange({ plaintextSize: resume.size, ...range });
  if (!plan) return { kind: 'unsatisfiable', size: resume.size };

  // Not leased on its own: between the peek and a plain lease, a delete (or the window's end) and
  // the janitor's check could pass, and this resume would read bytes being destroyed.
  const startedAt = deps.now().getTime();
  const maxMs = deps.config.maxDownloadSeconds * 1000;
  const leaseId = newLeaseId();
  const leased = await deps.resumes.lease(resumeId, resume, {
    id: leaseId,
    until: leaseUntil({ startedAt, now: startedAt, maxMs }),
    now: startedAt,
  });
  if (leased === 'deleted') return { kind: 'gone', reason: 'deleted' };
  if (leased === 'ended') return null;
  const lease = keepLease({
    guard: deps.blobs.guard,
    blobId: resume.blob,
    id: leaseId,
    startedAt,
    maxMs,
    now: () => deps.now().getTime(),
    log: deps.log,
  });
  const toEnd = plan.end === resume.size - 1;
  const finish = async ({ complete }: { complete: boolean }) =>
    endDownload(deps, {
      lookupId: resume.lookup,
      n: resume.n,
      event: complete && toEnd ? 'resumed_to_end' : 'resumed',
      blobId: resume.blob,
      lease,
      reason: 'released',
    });
  let body: Readable | undefined;
  try {
    const stallMs = storeStallMs(deps.config);
    const header = await fromStore(readAllWithin(deps.blobs.store.read(resume.blob, { start: 0, end: HEADER_LENGTH - 1 }), stallMs));
    const ciphertext = await fromStore(
      withinStall(deps.blobs.store.read(resume.blob, { start: plan.ciphertextStart, end: plan.ciphertextEnd }), stallMs),
    );
    body = pipeline(ciphertext, createRangeDecryptStream({ dataKey, blobId: resume.blob, header, plan }), () => undefined);
    const first = await fromStore(firstChunk(body, storeStallMs(deps.config)));
    deps.log.info('download_resumed', { bytes: plan.length });
    const cancel = async () => {
      body?.destroy();
      await endLease(deps, resume.blob, lease, 'released');
    };
    return {
      kind: 'ready',
      download: { metadata, size: resume.size, remainingUses: null, range: plan, etag: input.capability.etag, first, body, cancel, finish },
    };
  } catch (error) {
    body?.destroy();
    await endLease(deps, resume.blob, lease, 'released');
    if (isIntegrityCheckFailed(error))
      deps.log.error('integrity_check_failed', { reason: error.reason, bytes_released: error.bytesReleased });
    throw error;
  }
}

/**
 * A download's end, one round trip: its receipt note (the sender's convenience) and the end of its
 * lease in one script; when nothing protects the blob any more, its bytes go to the janitor now. A
 * failure never fails the download: the lease ends by itself within its TTL, and the receipt misses
 * one line.
 */
async function endDownload(
  deps: FilesDeps,
  end: { lookupId: string; n: number; event: DownloadEvent | null; blobId: string; lease: HeldLease; reason: 'burned' | 'released' },
): Promise<void> {
  const { lease } = end;
  lease.stopRenewing();
  try {
    const left = await deps.files.finish(end.lookupId, {
      n: end.n,
      event: end.event,
      now: deps.now().getTime(),
      blobId: end.blobId,
      leaseId: lease.id,
    });
    if (left.until === null) await deps.enqueue('shred', { blobId: end.blobId, reason: end.reason, lease: lease.id });
  } catch (error) {
    deps.log.warn('lease_release_failed', { error: (error as Error).message });
  }
}

/**
 * All of a short read (a resume's 42-byte header): the store's answer and every byte of it within
 * one deadline, as a download's first chunk; a store that answers and then stalls is a 503 too.
 */
async function readAllWithin(read: Promise<Readable>, stallMs: number): Promise<Buffer> {
  const deadline = Date.now() + stallMs;
  const stream = await withinStall(read, stallMs);
  const timer = setTimeout(
    () => stream.destroy(storageUnavailable(new Error(`the store sent nothing for ${stallMs / 1000} s`))),
    Math.max(0, deadline - Date.now()),
  );
  try {
    const parts: Buffer[] = [];
    for await (const part of stream) parts.push(part as Buffer);
    return Buffer.concat(parts);
  } finally {
    clearTimeout(timer);
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
async function endLease(deps: FilesDeps, blobId: string, lease: HeldLease, reason: 'burned' | 'released'): Promise<void> {
  try {
    const left = await lease.release();
    if (left.until === null) await deps.enqueue('shred', { blobId, reason, lease: lease.id });
  } catch (error) {
    // The lease ends by itself within its TTL, and the shred queued at burn or delete waits for it.
    deps.log.warn('lease_release_failed', { error: (error as Error).message });
  }
}

/**
 * A read of the blob, with the engine's own failure as a storage failure: a 503 like an unreachable
 * store (SPEC §3). Only around the store's calls, so a Redis error of the same request stays one.
 */
const fromStore = <T>(read: Promise<T>): Promise<T> =>
  read.catch((error: unknown) => {
    throw readFailure(error);
  });

/**
 * A blob that cannot be read before its first byte: a failure of the engine (an fs I/O, permission or
 * link error; an s3 stream cut off) answers 503 like an unreachable store (SPEC §3). A blob that is
 * missing or fails authentication is not the store's passing trouble, and stays what it is.
 */
function readFailure(error: unknown): unknown {
  const cause = error as NodeJS.ErrnoException | null;
  if (isIntegrityCheckFailed(error) || cause?.code === undefined || cause.code === 'ENOENT') return error;
  const byEngine = cause.syscall !== undefined || cause.code === STORE_FAILED || NETWORK_CODES.has(cause.code);
  return byEngine ? storageUnavailable(error) : error;
}

const NETWORK_CODES = new Set(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ECONNREFUSED']);

/** How long a store may send nothing before a download's first chunk: the upload's stall window (UPLOAD_STALL_SECONDS). */
const storeStallMs = (config: DownloadsDeps['config']) => config.uploadStallSeconds * 1000;

/**
 * The store's stream, or a storage failure when it has not answered within `stallMs` (an fs open or
 * an s3 request that hangs); a stream that comes after that is destroyed at once, so no handle stays.
 */
function withinStall(read: Promise<Readable>, stallMs: number): Promise<Readable> {
  return new Promise((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(storageUnavailable(new Error(`the store did not answer within ${stallMs / 1000} s`)));
    }, stallMs);
    read.then(
      (stream) => {
        clearTimeout(timer);
        if (late) stream.destroy();
        else resolve(stream);
      },
      (error: unknown) => {
        clearTimeout(timer);
        if (!late) reject(error);
      },
    );
  });
}

/**
 * Resolves with the first verified chunk (null when the stream ends empty), or rejects with the
 * stream's error, or with a storage failure when nothing arrives within `stallMs` (a store that
 * answered and then stalled would otherwise hold a claimed use, and its client, forever).
 */
function firstChunk(stream: Readable, stallMs: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const stalled = setTimeout(() => {
      cleanup();
      reject(storageUnavailable(new Error(`the store sent nothing for ${stallMs / 1000} s`)));
    }, stallMs);
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
      clearTimeout(stalled);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('error', onError);
  });
}
