import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LEASE_TTL_MS } from '../../app/blobs/lease.js';
import { startTestApp, testEnv, uniquePrefix, type TestApp } from '../helpers/app.js';
import { clearIfExternal, storageFor, type StorageView } from '../helpers/engine.js';
import { expectError, uploadOk, waitFor } from '../helpers/files.js';
import { nonJsonLines, runTs, type RunningProcess } from '../helpers/processes.js';
import { freePort } from '../helpers/redis-server.js';
import { expectNoPartial, expectNoPlaintext, expectNoRecordWithoutBlob, markedPlaintext } from './faults-helpers.js';

// Fault suite, process side (issue 8), on the project's storage engine: kill -9 of the API
// mid-upload, and a client that walks away mid-download. A full disk is in faults-disk.fs.test.ts.

const MiB = 1024 * 1024;
const places = (app: TestApp) => ({ storage: app.storage, redis: app.deps.redis, prefix: app.deps.keys.prefix });

describe('faults: kill -9 of the API mid-upload', () => {
  let dir: string;
  let api: RunningProcess | null = null;
  let worker: RunningProcess | null = null;
  let redis: Redis;
  let storage: StorageView;
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
    if (storage) await clearIfExternal(storage);
    await storage?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves a partial that the worker sweeps, and no record', async () => {
    const prefix = uniquePrefix();
    const port = await freePort();
    const env = testEnv(dir, prefix, inject('redisUrl'), { PORT: String(port), HOST: '127.0.0.1', MAX_FILE_SIZE: String(64 * MiB) });
    await mkdir(path.join(dir, 'temp'), { recursive: true });
    storage = await storageFor(env);
    api = runTs('app/main.ts', env);
    await api.waitForEvent('api_started');

    const { body, marker } = markedPlaintext(1 * MiB);
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'PUT',
      path: '/upload/big.bin',
      headers: { 'Content-Length': String(32 * MiB) },
    });
    const clientDone = new Promise<void>((resolve) => {
      req.on('error', () => resolve());
      req.on('close', () => resolve());
    });
    // 6 MiB: on s3, more than one 5 MiB part, so the multipart upload has a part in the store.
    for (let i = 0; i < 6; i++) req.write(body);
    const [partial] = await waitFor(
      () => storage.partials(),
      (p) => p.length === 1 && p[0]!.size > 1 * MiB,
      10_000,
      'the partial to grow',
    );
    expect(partial!.blobId).toEqual(expect.any(String));

    api.child.kill('SIGKILL');
    expect(await api.exited).toMatchObject({ signal: 'SIGKILL' });
    req.destroy();
    await clientDone;

    // The partial is ciphertext, left behind by the crash; no record was ever written, no blob committed.
    expect(await storage.hasPartial(partial!.blobId!)).toBe(true);
    await expectNoPlaintext({ storage }, marker);
    const places = { storage, redis, prefix };
    expect(await expectNoRecordWithoutBlob(places)).toBe(0);
    expect(await storage.blobIds()).toEqual([]);

    // The dead API's upload lease keeps the partial for at most LEASE_TTL_MS after the crash; then
    // the sweep takes it, where the store lists unfinished uploads.
    worker = runTs('workers/main.ts', { ...env, ORPHAN_AGE_MINUTES: '0.01', CLEANUP_INTERVAL_MINUTES: '0.02' });
    await worker.waitForEvent('worker_started');
    if (await storage.partialsListed()) {
      await waitFor(
        () => storage.hasPartial(partial!.blobId!),
        (present) => !present,
        LEASE_TTL_MS + 15_000,
        'the sweep to take the partial',
      );
      await expectNoPartial(places);
    } else {
      // s3rver lists no multipart uploads: the sweep cannot see this one and says so; the bucket's
      // lifecycle rule aborts it (docs/OPERATIONS.md). Its parts hold only ciphertext (checked above).
      await worker.waitForEvent('s3_multipart_listing_unsupported');
    }
    expect(await storage.blobIds()).toEqual([]);
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
    await expectNoPartial(places(app));
  });
});
