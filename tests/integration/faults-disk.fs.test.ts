import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSilentLogger } from '../../app/shared/logger.js';
import { shredFile } from '../../app/blobs/fs-shred.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { expectError, postFile, uploadOk } from '../helpers/files.js';
import { expectNoPartial, expectNoPlaintext, expectNoRecordWithoutBlob, markedPlaintext } from './faults-helpers.js';

// Fault suite, disk side (issue 8), fs only: a full disk is the fs engine's medium running out (a
// tmpfs the test mounts); an object store has no free space to run out of (its limit is
// MAX_STORAGE_BYTES), and an in-place shred needs a file system. The process faults run on both
// engines in faults-disk.test.ts.

const MiB = 1024 * 1024;
const places = (app: TestApp) => ({ storage: app.storage, redis: app.deps.redis, prefix: app.deps.keys.prefix });
const exists = (file: string) =>
  stat(file).then(
    () => true,
    () => false,
  );

/** Writes zeros until the filesystem says ENOSPC. */
async function fillDisk(file: string): Promise<void> {
  await new Promise<void>((resolve) => {
    const out = createWriteStream(file);
    const chunk = Buffer.alloc(64 * 1024);
    out.on('error', () => resolve());
    const pump = () => {
      while (out.write(chunk));
      out.once('drain', pump);
    };
    pump();
  });
}

describe('faults: disk full (tmpfs storage)', () => {
  let mountPoint: string;
  let app: TestApp;
  beforeAll(async () => {
    mountPoint = await mkdtemp(path.join(os.tmpdir(), 'cbx-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint]);
    app = await startTestApp({
      env: { STORAGE_PATH: path.join(mountPoint, 'uploads'), TEMP_PATH: path.join(mountPoint, 'temp'), MAX_FILE_SIZE: String(20 * MiB) },
    });
  });
  afterAll(async () => {
    await app?.close();
    execFileSync('umount', ['-l', mountPoint]);
    await rm(mountPoint, { recursive: true, force: true });
  });

  it('answers 507 for a file that does not fit, leaves no partial, and takes the next one that fits', async () => {
    const big = markedPlaintext(12 * MiB);
    // Multipart: the size is unknown until the disk runs out mid-stream.
    await expectError(await postFile(app, big.body, 'big.bin'), 507, 'INSUFFICIENT_STORAGE');
    await expectNoPartial(places(app));
    expect(await app.storage.names()).toEqual([]);
    // Raw PUT with a Content-Length: refused before a byte is written.
    const put = await fetch(`${app.url}/upload/big.bin`, {
      method: 'PUT',
      body: new Uint8Array(big.body),
      headers: { Accept: 'application/json' },
    });
    await expectError(put, 507, 'INSUFFICIENT_STORAGE');
    await expectNoPartial(places(app));
    expect(app.logs.some((l) => l.event === 'request_failed' && l.code === 'INSUFFICIENT_STORAGE')).toBe(true);

    const small = markedPlaintext(100 * 1024);
    const ok = await uploadOk(app, small.body, 'small.bin');
    const download = await fetch(`${app.url}/download/${ok.key}`);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).equals(small.body)).toBe(true);

    await expectNoRecordWithoutBlob(places(app));
    await expectNoPlaintext(places(app), big.marker);
    await expectNoPlaintext(places(app), small.marker);
  });

  it('shreds a blob in place on a completely full disk', async () => {
    const { body } = markedPlaintext(200 * 1024);
    const earlier = await app.storage.blobIds();
    await uploadOk(app, body, 'victim.bin', { uses: '5' });
    const [blobId] = (await app.storage.blobIds()).filter((id) => !earlier.includes(id));
    const blob = path.join(app.config.storagePath, blobId!);
    const filler = path.join(mountPoint, 'filler');
    await fillDisk(filler);
    try {
      const result = await shredFile(blob, { passes: 2, kind: 'blob', log: createSilentLogger() });
      expect((await stat(filler)).size).toBeGreaterThan(1 * MiB);
      expect(result.found).toBe(true);
      expect(result.size).toBeGreaterThan(200 * 1024);
      expect(await exists(blob)).toBe(false);
    } finally {
      await rm(filler, { force: true });
    }
  });
});
