import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type ReadStream, type WriteStream } from 'node:fs';
import { readdir, rename, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';

/** Blob ids are random names on disk: 24 random bytes, base64url (32 characters). */
export function newBlobId(): string {
  return randomBytes(24).toString('base64url');
}

export const PARTIAL_SUFFIX = '.partial';

/** Disk I/O for blobs. Partial uploads live in TEMP_PATH and are renamed into STORAGE_PATH when whole. */
export function createStorage(paths: { storagePath: string; tempPath: string }) {
  const blobPath = (blobId: string) => path.join(paths.storagePath, blobId);
  const partialPath = (blobId: string) => path.join(paths.tempPath, `${blobId}${PARTIAL_SUFFIX}`);
  let usageCache: { at: number; bytes: number } | null = null;

  return {
    blobPath,
    partialPath,
    openPartial(blobId: string): WriteStream {
      // 'wx': never follow or reuse an existing file; 0600: only Cinderbox reads its blobs.
      return createWriteStream(partialPath(blobId), { flags: 'wx', mode: 0o600, highWaterMark: 1024 * 1024 });
    },
    async commit(blobId: string): Promise<void> {
      await rename(partialPath(blobId), blobPath(blobId));
    },
    async discard(blobId: string): Promise<void> {
      for (const file of [partialPath(blobId), blobPath(blobId)]) await unlink(file).catch(() => undefined);
    },
    openBlob(blobId: string): ReadStream {
      return createReadStream(blobPath(blobId), { highWaterMark: 256 * 1024 });
    },
    async blobSize(blobId: string): Promise<number> {
      return (await stat(blobPath(blobId))).size;
    },
    /** Bytes free to an unprivileged writer on the storage filesystem. */
    async freeBytes(): Promise<number> {
      const s = await statfs(paths.storagePath);
      return s.bavail * s.bsize;
    },
    /** Bytes used by blobs and partials (for MAX_STORAGE_BYTES), cached for a second. */
    async usedBytes(now = Date.now()): Promise<number> {
      if (usageCache && now - usageCache.at < 1_000) return usageCache.bytes;
      let bytes = 0;
      for (const dir of [paths.storagePath, paths.tempPath]) {
        for (const name of await readdir(dir)) {
          const s = await stat(path.join(dir, name)).catch(() => null);
          if (s?.isFile()) bytes += s.size;
        }
      }
      usageCache = { at: now, bytes };
      return bytes;
    },
  };
}

export type Storage = ReturnType<typeof createStorage>;
