import type { GoneReason } from './files.repository.js';
import { fileGone, fileNotFound } from './files.errors.js';

/** What a lookup by passphrase found. `missing` is a failed lookup (it counts against the client). */
export type LookupResult<T> = { kind: 'found'; value: T } | { kind: 'gone'; reason: GoneReason } | { kind: 'missing' };

/**
 * The found value, or the error a client gets: 410 for a recently gone key, 404 for a key that
 * matches nothing. `settle` hears the outcome first: only a key that matched nothing is a failed
 * lookup (it counts against the client); a 410 is not.
 */
export async function foundOrThrow<T>(result: LookupResult<T>, settle: (outcome: 'hit' | 'miss') => Promise<void>): Promise<T> {
  await settle(result.kind === 'missing' ? 'miss' : 'hit');
  if (result.kind === 'found') return result.value;
  if (result.kind === 'gone') throw fileGone(result.reason);
  throw fileNotFound();
}

export function fileLinks(base: string, key: string) {
  return {
    share_url: `${base}/d#${key}`,
    download_url: `${base}/download/${key}`,
    preview_url: `${base}/preview/${key}`,
    status_url: `${base}/status/${key}`,
    delete_url: `${base}/files/${key}`,
  };
}

export function minutesLeft(expires: number, now: number): number {
  return Math.max(0, Math.round(((expires - now) / 60_000) * 10) / 10);
}
