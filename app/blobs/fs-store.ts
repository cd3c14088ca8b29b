import { createWriteStream } from 'node:fs';
import { access, constants, lstat, open, opendir, readdir, rename, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../shared/logger.js';
import { isBlobId } from './blob-id.js';
import type { BlobStore, BlobWriter, DestroyResult, StoredEntry } from './blob-store.js';
import { errorCode, shredFile, type ShredKind } from './fs-shred.js';
import { createUsage } from './usage.js';

export const PARTIAL_SUFFIX = '.partial';
/** Read size for downloads: fewer, larger reads than the 64 KiB default, still a few chunks of memory. */
const READ_BUFFER_BYTES = 256 * 1024;
const WRITE_BUFFER_BYTES = 1024 * 1024;
const USAGE_CACHE_MS = 1_000;

/**
 * The `fs` engine: blobs in STORAGE_PATH under their ids, uploads in progress in TEMP_PATH as
 * `<blobId>.partial` (same filesystem, so commit is a rename). Both directories belong to Cinderbox
 * alone. Destroying overwrites in place before unlinking (fs-shred.ts).
 */
export function createFsStore(options: { storagePath: string; tempPath: string; shredPasses: number; log: Logger }): BlobStore {
  const { storagePath, tempPath, shredPasses, log } = options;
  const blobPath = (blobId: string) => path.join(storagePath, blobId);
  const partialPath = (blobId: string) => path.join(tempPath, `${blobId}${PARTIAL_SUFFIX}`);
  const shred = (file: string, kind: ShredKind, reason: string) => shredFile(file, { passes: shredPasses, kind, log, reason });
  let free: { at: number; bytes: number } | null = null;
  // Partials this process is writing now: the upload pipeline counts them itself, as they grow
  // (encrypting-store.ts), so the usage scan leaves them out rather than count them twice.
  const writing = new Set<string>();
  // Scanned at most once a second, one scan at a time; this process's own commits and shreds count
  // at once, as the s3 engine's do, so MAX_STORAGE_BYTES holds between scans too.
  const usage = createUsage({
    now: Date.now,
    maxAgeMs: USAGE_CACHE_MS,
    list: async () => {
      const sizes = new Map<string, number>();
      for (const dir of [storagePath, tempPath]) {
        for (const name of await readdir(dir)) {
          if (dir === tempPath && writing.has(name)) continue;
          const file = path.join(dir, name);
          const s = await stat(file).catch(() => null);
          if (s?.isFile()) sizes.set(file, s.size);
        }
      }
      return sizes;
    },
    onRefreshFailed: (error) => log.warn('storage_usage_scan_failed', { error: errorCode(error) }),
  });
  const account = (bytes: number, file: string) => usage.add(bytes, file);
  const shredAccounted = async (file: string, kind: ShredKind, reason: string) => {
    const result = await shred(file, kind, reason);
    account(-result.size, file);
    return result;
  };

  return {
    engine: 'fs',

    create(blobId): BlobWriter {
      // 'wx': never follow or reuse an existing file; 0600: only Cinderbox reads its blobs.
      const stream = createWriteStream(partialPath(blobId), { flags: 'wx', mode: 0o600, highWaterMark: WRITE_BUFFER_BYTES });
      const name = path.basename(partialPath(blobId));
      writing.add(name);
      let committed = 0;
      return {
        stream,
        commit: async () => {
          await rename(partialPath(blobId), blobPath(blobId));
          writing.delete(name);
          committed = stream.bytesWritten;
          account(committed, blobPath(blobId));
        },
        abort: async () => {
          stream.destroy();
          // Never written with a stored key, so unreadable already: a plain unlink is enough.
          for (const file of [partialPath(blobId), blobPath(blobId)]) await unlink(file).catch(() => undefined);
          writing.delete(name);
          account(-committed, blobPath(blobId));
          committed = 0;
        },
      };
    },

    async read(blobId, range) {
      // Opened first, so a missing blob rejects here (ENOENT) rather than inside the stream;
      // the stream closes the handle when it ends or is destroyed.
      const handle = await open(blobPath(blobId), constants.O_RDONLY | constants.O_NOFOLLOW);
      return handle.createReadStream({ highWaterMark: READ_BUFFER_BYTES, ...(range ? { start: range.start, end: range.end } : {}) });
    },

    async destroy(blobId, reason): Promise<DestroyResult> {
      const blob = await shredAccounted(blobPath(blobId), 'blob', reason);
      const partial = await shredAccounted(partialPath(blobId), 'partial', reason);
      return { found: blob.found || partial.found, size: blob.size + partial.size };
    },

    async *list(): AsyncIterable<StoredEntry> {
      for (const { dir, kind } of [
        { dir: storagePath, kind: 'blob' as const },
        { dir: tempPath, kind: 'partial' as const },
      ]) {
        let entries;
        try {
          // opendir streams the directory: memory does not grow with the number of files.
          entries = await opendir(dir);
        } catch (error) {
          if (errorCode(error) === 'ENOENT') continue;
          throw error;
        }
        for await (const entry of entries) {
          if (!entry.isFile()) continue;
          const ref = path.join(dir, entry.name);
          const info = await lstat(ref).catch(() => null);
          if (!info) continue; // gone meanwhile
          const name = kind === 'partial' && entry.name.endsWith(PARTIAL_SUFFIX) ? entry.name.slice(0, -PARTIAL_SUFFIX.length) : entry.name;
          yield { blobId: isBlobId(name) ? name : null, kind, modifiedMs: info.mtimeMs, size: info.size, ref };
        }
      }
    },

    destroyEntry: (entry, reason) => shredAccounted(entry.ref, entry.kind, reason),

    async freeBytes() {
      // Cached for a second like the usage: a statfs per upload was measurable on small files, and
      // the check keeps DISK_RESERVE free beside the upload anyway.
      const now = Date.now();
      if (free && now - free.at < USAGE_CACHE_MS) return free.bytes;
      const s = await statfs(storagePath);
      free = { at: now, bytes: s.bavail * s.bsize };
      return free.bytes;
    },

    usedBytes: () => usage.get(),

    async check() {
      await Promise.all([storagePath, tempPath].map((dir) => access(dir, constants.W_OK)));
    },

    close: () => Promise.resolve(),
  };
}
