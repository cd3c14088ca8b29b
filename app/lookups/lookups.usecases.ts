import type { FileMetadata } from '../crypto/keys.js';
import { hashDeleteToken } from '../crypto/keys.js';
import type { Requester } from '../kdf/fair-scheduler.js';
import type { FileRecord, Lookup, Receipt } from '../files/files.repository.js';
import type { LookupResult } from '../files/files.models.js';
import { openRecord, resolveKey, type FilesDeps, type ResolvedKey } from '../files/files.usecases.js';

export interface FileView {
  key: string;
  record: FileRecord;
  metadata: FileMetadata;
}

function toView(resolved: ResolvedKey, found: Lookup<unknown>): LookupResult<FileView> {
  if (found.kind !== 'found') return found;
  return { kind: 'found', value: { key: resolved.key, record: found.record, metadata: openRecord(resolved, found.record).metadata } };
}

/** What the holder of a passphrase may see before spending a download; spends nothing. */
export async function fileStatus(deps: FilesDeps, input: { key: unknown; who: Requester }): Promise<LookupResult<FileView>> {
  const resolved = await resolveKey(deps, input);
  if (!resolved) return { kind: 'missing' };
  return toView(resolved, await deps.files.peek(resolved.lookupId, deps.now().getTime()));
}

/** The one-time preview: `used` once it has been shown. */
export async function filePreview(
  deps: FilesDeps,
  input: { key: unknown; who: Requester },
): Promise<LookupResult<FileView> | { kind: 'used' }> {
  const resolved = await resolveKey(deps, input);
  if (!resolved) return { kind: 'missing' };
  const found = await deps.files.preview(resolved.lookupId, deps.now().getTime());
  return found.kind === 'used' ? found : toView(resolved, found);
}

/**
 * The sender's delivery receipt (SPEC §10.6): what happened to the file — the preview, each download
 * started and completed, resumes, downloads asked for after the end — as times and counts only, for
 * the holder of the delete token and nobody else (the passphrase alone opens nothing here). Kept as
 * long as the tombstone.
 */
export async function fileReceipt(
  deps: FilesDeps,
  input: { key: unknown; token: string | undefined; who: Requester },
): Promise<LookupResult<Receipt> | { kind: 'forbidden' }> {
  const resolved = await resolveKey(deps, input);
  if (!resolved) return { kind: 'missing' };
  const found = await deps.files.receipt(resolved.lookupId, hashDeleteToken(input.token ?? ''), deps.now().getTime());
  return found.kind === 'found' ? { kind: 'found', value: found.receipt } : found;
}

/**
 * The sender's delete: the record goes at once (new requests get 410 `deleted`); downloads already
 * running keep their leases and finish, and the janitor shreds the bytes after the last one.
 */
export async function deleteFile(
  deps: FilesDeps,
  input: { key: unknown; token: string | undefined; who: Requester },
): Promise<LookupResult<null> | { kind: 'forbidden' }> {
  const resolved = await resolveKey(deps, input);
  if (!resolved) return { kind: 'missing' };
  const result = await deps.files.remove(resolved.lookupId, hashDeleteToken(input.token ?? ''), deps.now().getTime());
  if (result.kind !== 'deleted') return result;
  await deps.enqueue('shred', { blobId: result.blob, reason: 'deleted' });
  deps.log.info('file_deleted', {});
  return { kind: 'found', value: null };
}
