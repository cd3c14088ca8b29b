import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { storageUnavailable, type BlobStore } from '../../app/blobs/blob-store.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { expectError, uploadOk } from '../helpers/files.js';

/** What fs.open throws for a blob it may not read: the message and `path` name the blob's file. */
function permissionDenied(blobId: string): NodeJS.ErrnoException {
  const file = `/data/uploads/${blobId}`;
  return Object.assign(new Error(`EACCES: permission denied, open '${file}'`), { errno: -13, code: 'EACCES', syscall: 'open', path: file });
}

/** The project's engine, whose reads fail with `fault.make(blobId)` while it is set; the ids asked for go in `fault.asked`. */
function failingReads(store: BlobStore, fault: { make: ((blobId: string) => Error) | null; asked: string[] }): BlobStore {
  return {
    ...store,
    read(blobId, range) {
      if (!fault.make) return store.read(blobId, range);
      fault.asked.push(blobId);
      return Promise.reject(fault.make(blobId));
    },
  };
}

describe('a failed read is logged without the blob’s path or id (docs/SECURITY.md: no blob ids tied to requests)', () => {
  // An app per case: an outage's lines are sampled to one a second per event (error-handler.ts), and
  // each case must see its own.
  let app: TestApp;
  const fault: { make: ((blobId: string) => Error) | null; asked: string[] } = { make: null, asked: [] };

  beforeEach(async () => {
    app = await startTestApp({ wrapStore: (store) => failingReads(store, fault) });
  });
  afterEach(async () => {
    await app.close();
  });

  it.each([
    // The engine's own failure before the first byte is a 503 (docs/DECISIONS.md), wrapped or not.
    ['an EACCES from the fs engine', 503, 'SERVICE_UNAVAILABLE', 'storage_unavailable', permissionDenied],
    [
      'the same error wrapped as a storage failure',
      503,
      'SERVICE_UNAVAILABLE',
      'storage_unavailable',
      (id: string) => storageUnavailable(permissionDenied(id)),
    ],
    // Anything else is a bug's 500, logged through the same filter.
    [
      'an unexpected error naming the file',
      500,
      'INTERNAL_ERROR',
      'request_failed',
      (id: string) => new Error(`cannot use '/data/uploads/${id}'`),
    ],
  ] as const)(
    '%s: JSON error to the client, an error line with name, message and stack, and no path',
    async (_name, status, code, event, make) => {
      const up = await uploadOk(app, 'bytes nobody may read', 'report.txt');
      const before = app.rawLogs.length;
      fault.make = make;
      try {
        await expectError(await fetch(up.download_url), status, code);
      } finally {
        fault.make = null;
      }
      const blobId = fault.asked.at(-1)!;
      expect(blobId).toMatch(/^[A-Za-z0-9_-]{32}$/);
      const line = app.logs.slice(before).find((l) => l.event === event);
      expect(line).toMatchObject({
        level: 'error',
        code,
        error: { name: 'Error', message: expect.any(String), stack: expect.stringContaining('Error: ') },
      });
      const raw = app.rawLogs.slice(before).join('\n');
      expect(raw).not.toContain(blobId);
      expect(raw).not.toContain(`/data/uploads/${blobId}`);
    },
  );
});
