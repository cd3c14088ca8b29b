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

/**
 * The one-time preview: `used` once it has been shown. It is spent last: the record is read (free)
 * and opened, and `beforeSpending` (the route settles the lookup's slot, a Redis script) has run,
 * before the preview script marks it, so a preview whose answer failed on the way (a timeout, a
 * closed connection, a record that does not open) is not used up. The answer's record is the one
 * the spending script saw.
 */
export async function filePreview(
  deps: FilesDeps,
  input: { key: unknown; who: Requester; beforeSpending: () => Promise<void> },
): Promise<LookupResult<FileView> | { kind: 'used' }> {
  const resolved = await resolveKey(deps, input);
  if (!resolved) return { kind: 'missing' };
  const seen = toView(resolved, await deps.files.peek(resolved.lookupId, deps.now().getTime()));
  if (seen.kind !== 'found') return seen;
  if (seen.value.record.previewed) return { kind: 'used' };
  await input.beforeSpending();
  const spent = await deps.files.preview(resolved.lookupId, deps.now().getTime());
  if (spent.kind !== 'found') return spent;
  return { kind: 'found', value: { ...seen.value, record: spent.record } };
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
