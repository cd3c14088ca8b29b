import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createSilentLogger } from '../../app/shared/logger.js';
import { shredFile } from '../../app/blobs/fs-shred.js';
import { LEASE_TTL_MS } from '../../app/blobs/lease.js';
import { startTestApp, testEnv, uniquePrefix, type TestApp } from '../helpers/app.js';
import { expectError, postFile, uploadOk, waitFor } from '../helpers/files.js';
import { nonJsonLines, runTs, type RunningProcess } from '../helpers/processes.js';
import { freePort } from '../helpers/redis-server.js';
import { exists, expectNoPlaintext, expectNoRecordWithoutBlob, expectTempEmpty, filesIn, markedPlaintext } from './faults-helpers.js';

// Fault suite, disk and process side (issue 8): a full tmpfs, kill -9 of the API mid-upload, and a
// client that walks away mid-download.

const MiB = 1024 * 1024;
const places = (app: TestApp) => ({ storagePath: app.config.storagePath, tempPath: app.config.tempPath, redis: app.deps.redis, prefix: app.deps.keys.prefix });

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
    await expectTempEmpty(places(app));
    expect(await filesIn(app.config.storagePath)).toEqual([]);
    // Raw PUT with a Content-Length: refused before a byte is written.
    const put = await fetch(`${app.url}/upload/big.bin`, { method: 'PUT', body: new Uint8Array(big.body), headers: { Accept: 'application/json' } });
    await expectError(put, 507, 'INSUFFICIENT_STORAGE');
    await expectTempEmpty(places(app));
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
    const earlier = await filesIn(app.config.storagePath);
    await uploadOk(app, body, 'victim.bin', { uses: '5' });
    const [blob] = (await filesIn(app.config.storagePath)).filter((f) => !earlier.includes(f));
    const filler = path.join(mountPoint, 'filler');
    await fillDisk(filler);
    try {
      const result = await shredFile(blob!, { passes: 2, kind: 'blob', log: createSilentLogger() });
      expect((await stat(filler)).size).toBeGreaterThan(1 * MiB);
      expect(result.found).toBe(true);
      expect(result.size).toBeGreaterThan(200 * 1024);
      expect(await exists(blob!)).toBe(false);
    } finally {
      await rm(filler, { force: true });
    }
  });
});

describe('faults: kill -9 of the API mid-upload', () => {
  let dir: string;
  let api: RunningProcess | null = null;
  let worker: RunningProcess | null = null;
  let redis: Redis;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-kill-'));
    redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    for (const proc of [api, worker]) {
      if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGKILL');
        await proc.exited;
      }
    }
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves a partial that the worker sweeps, and no record', async () => {
    const prefix = uniquePrefix();
    const port = await freePort();
    const env = testEnv(dir, prefix, inject('redisUrl'), { PORT: String(port), HOST: '127.0.0.1', MAX_FILE_SIZE: String(64 * MiB) });
    await mkdir(path.join(dir, 'temp'), { recursive: true });
    api = runTs('app/main.ts', env);
    await api.waitForEvent('api_started');

    const { body, marker } = markedPlaintext(1 * MiB);
    const req = http.request({ host: '127.0.0.1', port, method: 'PUT', path: '/upload/big.bin', headers: { 'Content-Length': String(32 * MiB) } });
    const clientDone = new Promise<void>((resolve) => {
      req.on('error', () => resolve());
      req.on('close', () => resolve());
    });
    for (let i = 0; i < 3; i++) req.write(body);
    const tempPath = path.join(dir, 'temp');
    const partial = await waitFor(
      async () => {
        const [file] = await filesIn(tempPath);
        return file ? { file, size: (await stat(file)).size } : null;
      },
      (p) => p !== null && p.size > 1 * MiB,
      10_000,
    );
    expect(partial?.file).toMatch(/\.partial$/);

    api.child.kill('SIGKILL');
    expect(await api.exited).toMatchObject({ signal: 'SIGKILL' });
    req.destroy();
    await clientDone;

    // The partial is ciphertext, left behind by the crash; no record was ever written.
    expect(await exists(partial!.file)).toBe(true);
    await expectNoPlaintext({ storagePath: path.join(dir, 'uploads'), tempPath }, marker);
    const places = { storagePath: path.join(dir, 'uploads'), tempPath, redis, prefix };
    expect(await expectNoRecordWithoutBlob(places)).toBe(0);

    // The dead API's upload lease keeps the partial for at most LEASE_TTL_MS after the crash; then
    // the sweep takes it.
    worker = runTs('workers/main.ts', { ...env, ORPHAN_AGE_MINUTES: '0.01', CLEANUP_INTERVAL_MINUTES: '0.02' });
    await worker.waitForEvent('worker_started');
    await waitFor(() => exists(partial!.file), (present) => !present, LEASE_TTL_MS + 15_000, 'the sweep to take the partial');
    await expectTempEmpty(places);
    expect(await filesIn(places.storagePath)).toEqual([]);
    expect(nonJsonLines(api)).toEqual([]);
    expect(nonJsonLines(worker)).toEqual([]);
  });
});

describe('faults: client aborts mid-download', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ env: { MAX_FILE_SIZE: String(16 * MiB) } });
  });
  afterAll(async () => {
    await app.close();
  });

  it('keeps the use spent and keeps serving', async () => {
    const body = randomBytes(6 * MiB);
    const up = await uploadOk(app, body, 'big.bin', { uses: '2' });

    const received = await new Promise<number>((resolve, reject) => {
      const req = http.get(`${up.download_url.replace(/^https?:\/\/[^/]+/, app.url)}`, (res) => {
        expect(res.statusCode).toBe(200);
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes >= 256 * 1024) {
            req.destroy();
            resolve(bytes);
          }
        });
        res.on('end', () => reject(new Error('the whole file arrived; the abort was too late')));
      });
      req.on('error', () => undefined);
    });
    expect(received).toBeLessThan(body.length);

    const status = await waitFor(
      async () => (await fetch(`${app.url}/status/${up.key}`)).json() as Promise<{ remaining_uses: number }>,
      () => true,
    );
    expect(status.remaining_uses).toBe(1);

    // The server keeps serving: the last use downloads the whole file, and then it is burned.
    const last = await fetch(`${app.url}/download/${up.key}`);
    expect(last.status).toBe(200);
    expect(Buffer.from(await last.arrayBuffer()).equals(body)).toBe(true);
    await expectError(await fetch(`${app.url}/status/${up.key}`), 410, 'FILE_GONE');
    await expectTempEmpty(places(app));
  });
});
