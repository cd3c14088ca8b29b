/**
 * Scaling out on the s3 engine (SPEC §10.3, issue 18): two API processes that share nothing but the
 * bucket and Redis (each its own STORAGE_PATH and TEMP_PATH), one janitor process, the s3 project's
 * S3-protocol server and the suite's Redis. Runs in the s3 project only (vitest.config.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { newBlobId } from '../../app/blobs/blob-id.js';
import { testEnv, uniquePrefix } from '../helpers/app.js';
import { storageFor, type StorageView } from '../helpers/engine.js';
import { PNG_BYTES, startSlowDownload, waitFor, type ErrorBody, type UploadAnswer } from '../helpers/files.js';
import { runTs, type RunningProcess } from '../helpers/processes.js';
import { freePort } from '../helpers/redis-server.js';
import { markedPlaintext } from './faults-helpers.js';

const MiB = 1024 * 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('two API processes and a worker on s3, with no shared directory', () => {
  const prefix = uniquePrefix();
  const dirs: string[] = [];
  const procs: RunningProcess[] = [];
  let a: string;
  let b: string;
  let apiA: RunningProcess;
  let apiB: RunningProcess;
  let worker: RunningProcess;
  let storage: StorageView;
  let redis: Redis;

  beforeAll(async () => {
    const common = {
      STORAGE_BACKEND: 's3',
      MAX_FILE_SIZE: String(25 * MiB),
      ALLOWED_MIME_TYPES: 'text/plain,application/octet-stream',
      // The sweep runs every ~1 s over anything older than ~1 s: an orphan goes at once, and only a
      // record or a lease can keep a blob.
      ORPHAN_AGE_MINUTES: '0.02',
      CLEANUP_INTERVAL_MINUTES: '0.02',
      // No resume window: a burned file's object goes as soon as its download ends (a window would
      // keep it for resumes, tested in resume.test.ts on both engines).
      RESUME_WINDOW_SECONDS: '0',
    };
    const envFor = async (extra: Record<string, string>) => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-scale-'));
      dirs.push(dir);
      return testEnv(dir, prefix, inject('redisUrl'), { ...common, ...extra });
    };
    const urls: string[] = [];
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      procs.push(runTs('app/main.ts', await envFor({ PORT: String(port), HOST: '127.0.0.1' })));
      urls.push(`http://127.0.0.1:${port}`);
    }
    [a, b] = urls as [string, string];
    [apiA, apiB] = procs as [RunningProcess, RunningProcess];
    const workerEnv = await envFor({ LOG_LEVEL: 'debug' });
    worker = runTs('workers/main.ts', workerEnv);
    procs.push(worker);
    await Promise.all([
      apiA.waitForEvent('api_started', 30_000),
      apiB.waitForEvent('api_started', 30_000),
      worker.waitForEvent('worker_started', 30_000),
    ]);
    storage = await storageFor(workerEnv);
    redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 1 });
  }, 60_000);

  afterAll(async () => {
    for (const proc of procs) {
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGTERM');
        await proc.exited;
      }
    }
    redis?.disconnect();
    await storage?.clear();
    await storage?.close();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  const newBlobOf = async (before: string[]) => {
    const added = (await storage.blobIds()).filter((id) => !before.includes(id));
    expect(added).toHaveLength(1);
    return added[0]!;
  };
  const leases = async () => {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:blob:*`, 'COUNT', 1000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
    return found.sort();
  };

  it('uploads on one, answers status and the download on the other, burns there; the bucket holds only ciphertext, then nothing', async () => {
    const { body, marker } = markedPlaintext(6 * MiB); // more than one 5 MiB part: a multipart upload
    const filename = `scale-out-secret-${randomBytes(6).toString('hex')}.txt`;
    const before = await storage.blobIds();
    const form = new FormData();
    form.append('uses', '1');
    form.append('file', new Blob([new Uint8Array(body)], { type: 'text/plain' }), filename);
    const res = await fetch(`${a}/upload`, { method: 'POST', body: form });
    const text = await res.text();
    expect(res.status, text).toBe(201);
    const up = JSON.parse(text) as UploadAnswer;
    expect(up).toMatchObject({ filename, size: body.length, mime_type: 'text/plain' });
    const blob = await newBlobOf(before);

    // Every file s3rver keeps under the prefix (objects, their metadata, multipart parts), or every
    // object read back from an external store: no plaintext, no filename, no key, no token.
    const raw = await storage.raw();
    expect(raw.length).toBeGreaterThan(0);
    for (const { name, data } of raw) {
      for (const secret of [marker, Buffer.from(filename), Buffer.from(up.key), Buffer.from(up.delete_token)]) {
        expect(data.includes(secret), `${name} holds a secret`).toBe(false);
      }
      expect(name).not.toContain(filename);
    }
    const ciphertext = await storage.read(blob);
    expect(ciphertext.length).toBeGreaterThan(body.length);

    const status = await fetch(`${b}/status/${up.key}`);
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({ status: 'active', remaining_uses: 1, filename, size: body.length });

    const since = worker.mark();
    const download = await fetch(`${b}/download/${up.key}`, { headers: { Accept: 'application/octet-stream' } });
    expect(download.status).toBe(200);
    expect(download.headers.get('x-remaining-uses')).toBe('0');
    expect(sha256(Buffer.from(await download.arrayBuffer()))).toBe(sha256(body));
    expect(((await (await fetch(`${a}/status/${up.key}`)).json()) as ErrorBody).error.reason).toBe('burned');

    // The worker deletes the object within seconds of the burn.
    await waitFor(
      () => storage.has(blob),
      (present) => !present,
      10_000,
      'the burned object to be deleted',
    );
    await worker.waitForEvent('blob_shredded', 5_000, { since, where: (line) => line.reason === 'burned' || line.reason === 'released' });
    for (const proc of [apiA, apiB, worker]) {
      for (const secret of [filename, up.key, up.delete_token, blob]) expect(proc.stdout() + proc.stderr()).not.toContain(secret);
    }
  });

  it('leaves no object and no multipart upload after a refused type (415), an upload over MAX_FILE_SIZE (413) and a client abort', async () => {
    const names = await storage.names();
    const leasesBefore = await leases();

    const png = new FormData();
    png.append('file', new Blob([new Uint8Array(PNG_BYTES)], { type: 'image/png' }), 'picture.png');
    const refused = await fetch(`${a}/upload`, { method: 'POST', body: png });
    expect(refused.status).toBe(415);
    expect(((await refused.json()) as ErrorBody).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');

    // Chunked, with no Content-Length: the size is known only when the 26th MiB arrives, after five
    // parts went to the store.
    const chunk = randomBytes(MiB);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 26; i += 1) controller.enqueue(new Uint8Array(chunk));
        controller.close();
      },
    });
    const tooLarge = await fetch(`${b}/upload/big.bin`, {
      method: 'PUT',
      body: stream,
      duplex: 'half',
      headers: { Accept: 'application/json' },
    } as RequestInit);
    expect(tooLarge.status).toBe(413);
    expect(((await tooLarge.json()) as ErrorBody).error.code).toBe('FILE_TOO_LARGE');

    // 7 MiB of 20, then the client goes away: a part is in the store by then.
    const aborted = await new Promise<string>((resolve) => {
      const req = http.request(`${a}/upload/aborted.bin`, { method: 'PUT', headers: { 'Content-Length': String(20 * MiB) } });
      req.on('error', (e) => resolve(e.message));
      req.on('response', (r) => resolve(`status ${r.statusCode}`));
      void (async () => {
        for (let i = 0; i < 7; i += 1) if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
        req.destroy();
      })();
    });
    expect(aborted).not.toMatch(/^status 201/);

    // Each failed upload releases its lease once its cleanup (the multipart abort) is done.
    expect(await waitFor(leases, (now) => now.length === leasesBefore.length, 10_000, 'the failed uploads to be cleaned up')).toEqual(
      leasesBefore,
    );
    expect(await storage.names()).toEqual(names);
    if (await storage.partialsListed()) {
      expect(await storage.partials()).toEqual([]);
    } else {
      // s3rver neither lists nor aborts multipart uploads: the engine tried, and says it could not
      // (its parts wait for the bucket lifecycle rule; docs/OPERATIONS.md).
      const warned = [...apiA.events(), ...apiB.events()].filter((line) => line.event === 's3_multipart_abort_unsupported');
      expect(warned.length).toBeGreaterThan(0);
    }
  });

  it('sweeps an orphan object older than ORPHAN_AGE_MINUTES', async () => {
    const orphan = newBlobId();
    const since = worker.mark();
    await storage.put(orphan, randomBytes(4096)); // straight through the SDK: no record, no lease
    expect(await storage.has(orphan)).toBe(true);
    await waitFor(
      () => storage.has(orphan),
      (present) => !present,
      15_000,
      'the orphan to be swept',
    );
    await worker.waitForEvent('orphan_swept', 5_000, { since, where: (line) => Number(line.shredded) >= 1 });
  });

  it('keeps a blob that a slow download on the other API is reading through sweeps, then deletes it', async () => {
    const bytes = randomBytes(24 * MiB); // more than loopback buffers hold: a paused client keeps the server mid-stream
    const before = await storage.blobIds();
    const res = await fetch(`${a}/upload/big.bin?uses=1`, { method: 'PUT', body: bytes, headers: { Accept: 'application/json' } });
    expect(res.status).toBe(201);
    const { key } = (await res.json()) as UploadAnswer;
    const blob = await newBlobOf(before);

    const download = await startSlowDownload(`${b}/download/${key}`);
    expect(download.status).toBe(200);
    // A sweep after the burn found the object old enough and without a record, and kept it for its lease.
    const since = worker.mark();
    await worker.waitForEvent('orphan_swept', 15_000, { since, where: (line) => Number(line.kept_leased) >= 1 });
    expect(await storage.has(blob)).toBe(true);

    const { body, complete } = await download.finish();
    expect(complete).toBe(true);
    expect(sha256(body)).toBe(sha256(bytes));
    await waitFor(
      () => storage.has(blob),
      (present) => !present,
      10_000,
      'the object to be deleted after the download',
    );
  });

  it('wrote nothing to the processes’ own directories', async () => {
    for (const dir of dirs) expect(await readdir(dir)).toEqual([]);
  });
});
