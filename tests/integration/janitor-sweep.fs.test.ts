import { randomBytes } from 'node:crypto';
import { link, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { createFsStore } from '../../app/blobs/fs-store.js';
import { shredFile } from '../../app/blobs/fs-shred.js';
import { createSilentLogger, type Logger } from '../../app/shared/logger.js';

// fs only: the fs engine's shred against what a directory can hold and an object store cannot (a
// symlink, a hard link to someone else's file, an empty file overwritten in place). The janitor's
// engine-neutral building blocks are in janitor-sweep.test.ts.

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );
const newBlobId = () => randomBytes(24).toString('base64url');

function recordingLogger(lines: { event: string; fields: Record<string, unknown> }[]): Logger {
  const record = (event: string, fields: Record<string, unknown> = {}) => void lines.push({ event, fields });
  const logger: Logger = { error: record, warn: record, info: record, debug: record, child: () => logger, close: () => Promise.resolve() };
  return logger;
}

describe('the fs engine’s shred', () => {
  let dir: string;
  let storagePath: string;
  let tempPath: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-sweep-'));
    storagePath = path.join(dir, 'uploads');
    tempPath = path.join(dir, 'temp');
    await mkdir(storagePath);
    await mkdir(tempPath);
    return () => rm(dir, { recursive: true, force: true });
  });

  it('removes a symlink planted in the storage directory without touching its target', async () => {
    const target = path.join(dir, 'precious');
    await writeFile(target, 'keep me');
    const link = path.join(storagePath, newBlobId());
    await symlink(target, link);

    await shredFile(link, { passes: 1, kind: 'blob', log: createSilentLogger() });

    expect(await exists(link)).toBe(false);
    expect(await readFile(target, 'utf8')).toBe('keep me');
  });

  it('shreds an empty file, and a missing one is success', async () => {
    const empty = path.join(storagePath, newBlobId());
    await writeFile(empty, '');
    expect(await shredFile(empty, { passes: 3, kind: 'blob', log: createSilentLogger() })).toEqual({ found: true, size: 0 });
    expect(await exists(empty)).toBe(false);
    expect(await shredFile(empty, { passes: 3, kind: 'blob', log: createSilentLogger() })).toEqual({ found: false, size: 0 });
  });

  it('unlinks a hard-linked file without overwriting it: the other name keeps its content', async () => {
    const outside = path.join(dir, 'someone-elses-file');
    await writeFile(outside, 'not ours to overwrite');
    const blobId = newBlobId();
    await link(outside, path.join(storagePath, blobId));
    const lines: { event: string; fields: Record<string, unknown> }[] = [];

    const result = await createFsStore({ storagePath, tempPath, shredPasses: 2, log: recordingLogger(lines) }).destroy(blobId, 'orphan');

    expect(result.found).toBe(true);
    expect(await exists(path.join(storagePath, blobId))).toBe(false);
    expect(await readFile(outside, 'utf8')).toBe('not ours to overwrite');
    expect(lines.find((l) => l.event === 'shred_hard_link_unlinked')?.fields).toEqual({ kind: 'blob', links: 2 });
  });
});
