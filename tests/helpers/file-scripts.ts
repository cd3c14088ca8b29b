/**
 * The file scripts (app/files/lua) through their repository, against the suite's real Redis under a
 * prefix of their own: records stored directly, with the clock passed in (NOW, far in the future, so
 * Redis, which keeps keys by wall time, never expires them during a test).
 */
import { Redis } from 'ioredis';
import { expect, inject } from 'vitest';
import { newBlobId } from '../../app/blobs/blob-id.js';
import { createBlobGuard } from '../../app/blobs/blobs.repository.js';
import { createFilesRepository, type FileRecord, type FilesRepository } from '../../app/files/files.repository.js';
import { redisKeys } from '../../app/shared/redis-keys.js';
import { uniquePrefix } from './app.js';

export const NOW = 1_800_000_000_000;

/** A lookup id of the right shape (64 characters), random. */
export const lookupId = () => `${newBlobId()}`.padEnd(64, '0');

/** A client of the suite's Redis, the prefix's keys, and the repositories over them. Disconnect `redis` when done. */
export function openFileScripts() {
  const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 1 });
  const keys = redisKeys(uniquePrefix());
  return { redis, keys, files: createFilesRepository(redis, keys, 3_600_000), guard: createBlobGuard(redis, keys) };
}

/** A stored record with `uses` left, live until NOW + 60 s. */
export async function storeRecord(files: FilesRepository, uses: number): Promise<{ id: string; record: FileRecord }> {
  const record: FileRecord = {
    blob: newBlobId(),
    wk: 'wrapped',
    meta: 'sealed',
    uses,
    totalUses: uses,
    previewed: false,
    size: 10,
    created: NOW,
    expires: NOW + 60_000,
    dt: 'token-hash',
  };
  const id = lookupId();
  expect(await files.store(id, record)).toBe(true);
  return { id, record };
}
