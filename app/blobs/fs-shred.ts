import { randomFill } from 'node:crypto';
import { constants } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import type { Logger } from '../shared/logger.js';

/** Overwrite chunk: memory stays at one chunk whatever the file size. */
const SHRED_CHUNK_BYTES = 1024 * 1024;

export type ShredKind = 'blob' | 'partial';

interface ShredResult {
  /** False when there was nothing to shred (already gone: the job ran before, or never had a file). */
  found: boolean;
  size: number;
}

export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function fillRandom(buffer: Buffer, length: number): Promise<void> {
  return new Promise((resolve, reject) => randomFill(buffer, 0, length, (error) => (error ? reject(error) : resolve())));
}

async function unlinkIfPresent(filePath: string): Promise<void> {
  try {
    await unlink(filePath);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
  }
}

async function writeFully(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  let written = 0;
  while (written < length) {
    const { bytesWritten } = await handle.write(buffer, written, length - written, position + written);
    written += bytesWritten;
  }
}

/**
 * Overwrites a file in place with `passes` rounds of random bytes, fsyncs after each round, then
 * unlinks it. Idempotent: a missing file is success. The file is opened read-write without create,
 * truncate or append (`r+`) so every write lands on the existing blocks, and with O_NOFOLLOW so a
 * symlink planted in our directories can never make us overwrite something else. A file with other
 * hard links is someone else's data too (a link made into our directory): it is unlinked, never
 * overwritten, and logged.
 */
export async function shredFile(
  filePath: string,
  options: { passes: number; kind: ShredKind; log: Logger; reason?: string },
): Promise<ShredResult> {
  const { passes, kind, log } = options;
  const started = performance.now();
  let handle: FileHandle;
  try {
    handle = await open(filePath, constants.O_RDWR | constants.O_NOFOLLOW);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') return { found: false, size: 0 };
    if (code === 'ELOOP') {
      // A symlink is not our data: remove the link itself, never what it points to.
      await unlinkIfPresent(filePath);
      log.warn('shred_symlink_removed', { kind });
      return { found: true, size: 0 };
    }
    throw error;
  }

  let size: number;
  let links: number;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error(`refusing to shred a non-regular ${kind}`);
    links = stat.nlink;
    size = links > 1 ? 0 : stat.size;
    if (links === 1) await overwrite(handle, size, passes, log, kind);
  } finally {
    await handle.close();
  }
  await unlinkIfPresent(filePath);
  if (links > 1) {
    log.warn('shred_hard_link_unlinked', { kind, links });
    return { found: true, size: 0 };
  }
  log.info('blob_shredded', {
    kind,
    size,
    passes,
    duration_ms: Math.round(performance.now() - started),
    ...(options.reason ? { reason: options.reason } : {}),
  });
  return { found: true, size };
}

async function overwrite(handle: FileHandle, size: number, passes: number, log: Logger, kind: ShredKind): Promise<void> {
  log.debug('shred_started', { kind, size, passes });
  const buffer = Buffer.allocUnsafe(Math.max(1, Math.min(SHRED_CHUNK_BYTES, size)));
  for (let pass = 0; pass < passes; pass++) {
    for (let position = 0; position < size; position += buffer.length) {
      const length = Math.min(buffer.length, size - position);
      await fillRandom(buffer, length);
      await writeFully(handle, buffer, length, position);
    }
    // Each pass must reach the disk, or the page cache could collapse the passes into one.
    await handle.sync();
  }
}
