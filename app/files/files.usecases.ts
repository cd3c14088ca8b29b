import type { RuntimeConfig } from '../config.js';
import type { BlobStore } from '../blobs/blob-store.js';
import type { BlobGuard } from '../blobs/blobs.repository.js';
import { decryptMetadata, unwrapDataKey, type FileMetadata } from '../crypto/keys.js';
import type { Requester } from '../kdf/fair-scheduler.js';
import type { Kdf } from '../kdf/kdf.js';
import type { KeyPool } from '../kdf/key-pool.js';
import { normaliseKey, type Wordlist } from '../diceware/wordlist.js';
import type { Enqueue } from '../jobs/enqueue.js';
import type { Logger } from '../shared/logger.js';
import type { FileRecord, FilesRepository } from './files.repository.js';

/** What the file use cases (upload, lookups, download) work with; none of it knows HTTP. */
export interface FilesDeps {
  config: RuntimeConfig;
  kdf: Kdf;
  /** Pre-derived keys for uploads (SPEC §10.5); null when KDF_POOL_SIZE is 0. */
  pool: KeyPool | null;
  files: FilesRepository;
  blobs: { store: BlobStore; guard: BlobGuard };
  wordlist: Wordlist;
  enqueue: Enqueue;
  log: Logger;
  now: () => Date;
}

export interface ResolvedKey {
  key: string;
  lookupId: string;
  kek: Buffer;
}

/**
 * Key input → its derived ids, in `who`'s fair turn at the KDF; null (a failed lookup, decided
 * without KDF work) when it is not wordlist words.
 */
export async function resolveKey(
  deps: Pick<FilesDeps, 'kdf' | 'wordlist'>,
  input: { key: unknown; who: Requester },
): Promise<ResolvedKey | null> {
  const key = normaliseKey(input.key, deps.wordlist);
  if (key === null) return null;
  const { lookupId, kek } = await deps.kdf.derive(key, input.who);
  return { key, lookupId, kek };
}

/** Unwraps a record's data key and metadata with the passphrase's KEK. */
export function openRecord(resolved: ResolvedKey, record: FileRecord): { dataKey: Buffer; metadata: FileMetadata } {
  const dataKey = unwrapDataKey({ wrapped: Buffer.from(record.wk, 'base64'), kek: resolved.kek, lookupId: resolved.lookupId });
  const metadata = decryptMetadata({ dataKey, blobId: record.blob, sealed: Buffer.from(record.meta, 'base64') });
  return { dataKey, metadata };
}
