import { randomBytes } from 'node:crypto';
import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { expectError, uploadOk, waitFor } from '../helpers/files.js';

// fs only: a blob being read is an open file descriptor of this process, visible in /proc/self/fd.
// On s3 it is a pooled socket that cannot be told apart from the pool's idle ones; the s3 engine's
// release of a GetObject body is tested in tests/integration/s3-store.test.ts.

describe('downloads on the fs engine', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('leaves no open handle of the blob after a failure before the first byte', async () => {
    const before = await app.storage.blobIds();
    const up = await uploadOk(app, randomBytes(300 * 1024), 'corrupt.bin');
    const [blobId] = (await app.storage.blobIds()).filter((id) => !before.includes(id));
    const blob = path.join(app.config.storagePath, blobId!);
    await app.storage.corrupt(blobId!, 100);
    const blobHandles = async () => {
      const targets = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
      return targets.filter((t) => t === blob || t === `${blob} (deleted)`);
    };

    await expectError(await fetch(up.download_url), 500, 'INTEGRITY_CHECK_FAILED');

    expect(await waitFor(blobHandles, (open) => open.length === 0, 5_000, 'the blob handle to close')).toEqual([]);
    expect(((await (await fetch(up.status_url)).json()) as { remaining_uses: number }).remaining_uses).toBe(1);
    expect(app.logs.filter((l) => l.event === 'download_refunded').at(-1)).toMatchObject({ restored: true });
  });
});
