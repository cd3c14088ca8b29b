import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { testEngine, type StorageView } from '../helpers/engine.js';
import { fileKeys, redisDump, redisKeysOf, storedFiles, waitFor, type UploadAnswer } from '../helpers/files.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Reads everything the store's medium holds (fs: the files in TEMP_PATH and STORAGE_PATH; s3rver: its
 * objects and the parts of unfinished uploads) over and over until stopped; records every name, and
 * the names of whatever held one of `needles`.
 */
function watchStorage(storage: StorageView, needles: string[]) {
  const seen = { names: new Set<string>(), hits: [] as string[], reads: 0 };
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const { name, data } of await storage.raw()) {
        seen.names.add(name);
        seen.reads += 1;
        for (const needle of needles) if (hasText(data, needle)) seen.hits.push(`${name} holds ${needle}`);
      }
      await sleep(2);
    }
  })();
  return {
    seen,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** A raw PUT that sends `parts` with pauses, and optionally stops or aborts. */
function slowPut(
  app: TestApp,
  urlPath: string,
  parts: Buffer[],
  opts: { pauseMs?: number; contentLength?: number; abortAfter?: number; stallAfter?: number } = {},
) {
  return new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
    const req = http.request(`${app.url}${urlPath}`, {
      method: 'PUT',
      headers: {
        Accept: 'application/json',
        ...(opts.contentLength !== undefined ? { 'Content-Length': String(opts.contentLength) } : {}),
      },
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('error', (e) => resolve({ error: e.message }));
    void (async () => {
      for (let i = 0; i < parts.length; i += 1) {
        if (opts.abortAfter === i) {
          req.destroy();
          return;
        }
        if (opts.stallAfter === i) return; // send nothing more, keep the socket open
        req.write(parts[i]);
        await sleep(opts.pauseMs ?? 0);
      }
      req.end();
    })();
  });
}

const hasText = (haystack: Buffer | string, needle: string) =>
  typeof haystack === 'string' ? haystack.includes(needle) : haystack.includes(Buffer.from(needle));

describe('the encrypting upload engine, end to end (issue 3)', () => {
  let app: TestApp;
  const secrets: string[] = [];
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  /** What the app has stored: blobs in its engine and file records in Redis. */
  const traceOf = async () => ({ files: await storedFiles(app), keys: await fileKeys(app) });
  /**
   * Waits until the app holds exactly what it held `before` (a failed upload's cleanup, and the
   * release of its lease, may end after the request's log line: an s3 upload first waits for its
   * part in flight; well before the lease's own 15 s TTL).
   */
  const expectNothingLeft = async (before: { files: string[]; keys: string[] }) => {
    expect(await waitFor(traceOf, (now) => now.files.length === before.files.length && now.keys.length === before.keys.length)).toEqual(
      before,
    );
  };

  it('never shows the plaintext or the filename on disk while uploading, nor in Redis afterwards', async () => {
    const marker = `MARKER-${randomBytes(12).toString('hex')}`;
    const filename = `secret-name-${randomBytes(6).toString('hex')}.txt`;
    // 6 MiB in 12 pieces: more than one 5 MiB part, so an s3 upload sends a part while the rest arrives.
    const chunk = Buffer.from(`${marker}\n`.repeat(16_384));
    const parts = Array.from({ length: 12 }, () => chunk);
    const watcher = watchStorage(app.storage, [marker, filename]);
    const res = await slowPut(app, `/upload/${filename}?uses=2`, parts, { pauseMs: 50 });
    const after = await storedFiles(app);
    await watcher.stop();
    expect('status' in res && res.status).toBe(201);
    const up = JSON.parse((res as { body: string }).body) as UploadAnswer;
    expect(up.filename).toBe(filename);
    expect(up.size).toBe(chunk.length * 12);
    // The watcher really saw the unfinished upload (fs: the partial; s3: a part of the multipart upload) and the blob.
    expect(watcher.seen.reads).toBeGreaterThan(0);
    expect([...watcher.seen.names].some((n) => app.storage.isUnfinished(n))).toBe(true);
    expect(after).toHaveLength(1);
    for (const name of watcher.seen.names) {
      expect(name).not.toContain(marker);
      expect(name).not.toContain('secret-name');
    }
    expect(watcher.seen.hits).toEqual([]);
    for (const { data } of await app.storage.raw()) {
      expect(hasText(data, marker)).toBe(false);
      expect(hasText(data, filename)).toBe(false);
    }

    const lookupIds = (await redisKeysOf(app, 'file:*')).map((k) => /\{(.+)\}/.exec(k)![1]!);
    expect(lookupIds).toHaveLength(1);
    secrets.push(up.key, up.delete_token, filename, ...lookupIds);
    const dump = await redisDump(app);
    expect(dump.length).toBeGreaterThan(0);
    for (const secret of [marker, filename, up.key, up.delete_token]) expect(hasText(dump, secret)).toBe(false);
    // The words themselves (joined any way) never appear either.
    expect(hasText(dump, up.key.split('-').join(' '))).toBe(false);

    // And the file still downloads intact.
    const dl = await fetch(up.download_url);
    expect(dl.status).toBe(200);
    expect(Buffer.from(await dl.arrayBuffer()).equals(Buffer.concat(parts))).toBe(true);
  });

  it('a multipart upload writes no plaintext or filename either', async () => {
    const marker = `MPMARKER-${randomBytes(12).toString('hex')}`;
    const filename = `mp-name-${randomBytes(6).toString('hex')}.txt`;
    const watcher = watchStorage(app.storage, [marker, filename]);
    const form = new FormData();
    form.append('file', new Blob([`${marker}\n`.repeat(50_000)]), filename);
    const res = await fetch(`${app.url}/upload`, { method: 'POST', body: form });
    await watcher.stop();
    expect(res.status).toBe(201);
    const up = (await res.json()) as UploadAnswer;
    secrets.push(up.key, up.delete_token, filename);
    for (const name of watcher.seen.names) expect(name).not.toContain('mp-name');
    expect(watcher.seen.hits).toEqual([]);
    for (const { data } of await app.storage.raw()) expect(hasText(data, marker)).toBe(false);
    const dump = await redisDump(app);
    for (const secret of [marker, filename, up.key, up.delete_token]) expect(hasText(dump, secret)).toBe(false);
  });

  it('a client abort mid-upload (PUT) leaves no file and no record', async () => {
    const before = await traceOf();
    const completedBefore = app.logs.filter((l) => l.event === 'request_completed').length;
    // 7 MiB before the abort: an s3 upload has started its multipart upload and sent a part by then.
    const part = randomBytes(1024 * 1024);
    const res = await slowPut(
      app,
      '/upload/aborted.bin',
      Array.from({ length: 8 }, () => part),
      { contentLength: 9 * part.length, pauseMs: 20, abortAfter: 7 },
    );
    expect('error' in res).toBe(true);
    // Wait for the server to finish with the request, then for the partial to go.
    await waitFor(
      async () => app.logs.filter((l) => l.event === 'request_completed').length,
      (n) => n > completedBefore,
      5_000,
    );
    await expectNothingLeft(before);
  });

  it('a client abort mid-upload (multipart) leaves no file and no record', async () => {
    const before = await traceOf();
    const boundary = 'cbxabortboundary';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="abort.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    const result = await new Promise<string>((resolve) => {
      const req = http.request(`${app.url}/upload`, {
        method: 'POST',
        headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}`, 'Content-Length': String(10 * 1024 * 1024) },
      });
      req.on('error', (e) => resolve(e.message));
      req.on('response', (r) => resolve(`status ${r.statusCode}`));
      req.write(head);
      void (async () => {
        // 7 MiB, more than one s3 part, before the client goes away.
        for (let i = 0; i < 7; i += 1) {
          req.write(randomBytes(1024 * 1024));
          await sleep(20);
        }
        req.destroy();
      })();
    });
    expect(result).not.toMatch(/^status 201/);
    await expectNothingLeft(before);
  });

  describe('a stalled body', () => {
    let stall: TestApp;
    const traces = async (app: TestApp) => ({ stored: await storedFiles(app), leases: await redisKeysOf(app, 'blob:*') });
    beforeAll(async () => {
      stall = await startTestApp({ env: { UPLOAD_STALL_SECONDS: '1' } });
    });
    afterAll(async () => {
      await stall.close();
    });

    it('is cut off after UPLOAD_STALL_SECONDS and leaves nothing (PUT)', async () => {
      const started = Date.now();
      const part = randomBytes(64 * 1024);
      const res = await slowPut(stall, '/upload/stalled.bin', [part, part, part], { contentLength: 10 * part.length, stallAfter: 2 });
      expect(Date.now() - started).toBeLessThan(10_000);
      // A stalled PUT is answered too (docs/DECISIONS.md: "multipart and raw PUT alike"), then closed.
      expect(res).toMatchObject({ status: 408 });
      expect(JSON.parse((res as { body: string }).body)).toMatchObject({ error: { code: 'UPLOAD_STALLED' } });
      expect(
        await waitFor(
          () => storedFiles(stall),
          (f) => f.length === 0,
        ),
      ).toEqual([]);
      expect(await fileKeys(stall)).toEqual([]);
    });

    it('is cut off after UPLOAD_STALL_SECONDS and leaves nothing (multipart)', async () => {
      const started = Date.now();
      const boundary = 'cbxstallboundary';
      const pending = new Promise<string>((resolve) => {
        const req = http.request(`${stall.url}/upload`, {
          method: 'POST',
          headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}`, 'Content-Length': String(1024 * 1024) },
        });
        req.on('error', (e) => resolve(e.message));
        req.on('response', (r) => {
          r.resume();
          resolve(`status ${r.statusCode}`);
        });
        req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="stall.bin"\r\n\r\n`);
        req.write(randomBytes(10_000));
      });
      // The upload is under way: it holds its blob's lease, and on fs its partial file exists (an s3
      // upload of 10 KB is still in memory: nothing reaches the store before 256 KiB)...
      await waitFor(
        () => traces(stall),
        (t) => t.leases.length === 1 && (testEngine() !== 'fs' || t.stored.length === 1),
        1_000,
        'the upload to start',
      );
      // ...and the pipeline's idle timer discards it after UPLOAD_STALL_SECONDS.
      expect(
        await waitFor(
          () => traces(stall),
          (t) => t.leases.length + t.stored.length === 0,
          3_000,
        ),
      ).toEqual({ stored: [], leases: [] });
      expect(Date.now() - started).toBeLessThan(3_000);
      // ...and the client, still connected, is told why: 408 UPLOAD_STALLED, like a raw PUT.
      const result = await pending;
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(result).toBe('status 408');
      expect(
        await waitFor(
          () => storedFiles(stall),
          (f) => f.length === 0,
        ),
      ).toEqual([]);
      expect(await fileKeys(stall)).toEqual([]);
    });
  });

  it('the logs hold no passphrase, delete token, filename or lookup id', () => {
    expect(secrets.length).toBeGreaterThan(0);
    const logs = app.rawLogs.join('\n');
    expect(logs).toContain('file_uploaded');
    for (const secret of secrets) expect(logs).not.toContain(secret);
  });
});
