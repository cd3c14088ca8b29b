import http from 'node:http';
import { Readable } from 'node:stream';
import { expect } from 'vitest';
import type { TestApp } from './app.js';

export interface UploadAnswer {
  key: string;
  share_url: string;
  download_url: string;
  preview_url: string;
  status_url: string;
  delete_url: string;
  delete_token: string;
  expiry: string;
  uses: number;
  filename: string;
  mime_type: string;
  size: number;
  created_at: string;
  sha256: string;
}

export interface ErrorBody {
  error: {
    code: string;
    message: string;
    request_id: string;
    details?: { field: string; message: string }[];
    reason?: string;
    [k: string]: unknown;
  };
}

/** A multipart upload of `bytes` named `filename`, with optional form fields. */
export function postFile(
  app: TestApp,
  bytes: Uint8Array | string,
  filename = 'file.bin',
  fields: Record<string, string> = {},
  type = 'application/octet-stream',
): Promise<Response> {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  form.append('file', new Blob([typeof bytes === 'string' ? Buffer.from(bytes) : new Uint8Array(bytes)], { type }), filename);
  return fetch(`${app.url}/upload`, { method: 'POST', body: form });
}

/** Uploads and asserts 201; returns the JSON answer. */
/** A chunked PUT (no Content-Length) of `bytes` in 50 KB pieces that waits for `until` once `after` bytes are sent. */
export function pausedPut(app: TestApp, name: string, bytes: Buffer, pause: { after: number; until: Promise<void> }): Promise<Response> {
  const body = Readable.from(
    (async function* () {
      let sent = 0;
      for (let at = 0; at < bytes.length; at += 50_000) {
        if (sent >= pause.after) await pause.until;
        const piece = bytes.subarray(at, at + 50_000);
        sent += piece.length;
        yield piece;
      }
    })(),
  );
  return fetch(`${app.url}/upload/${name}`, {
    method: 'PUT',
    body: Readable.toWeb(body) as ReadableStream<Uint8Array>,
    duplex: 'half',
    headers: { Accept: 'application/json' },
  } as RequestInit);
}

export async function uploadOk(
  app: TestApp,
  bytes: Uint8Array | string,
  filename = 'file.bin',
  fields: Record<string, string> = {},
): Promise<UploadAnswer> {
  const res = await postFile(app, bytes, filename, fields);
  const text = await res.text();
  expect(res.status, text).toBe(201);
  return JSON.parse(text) as UploadAnswer;
}

/** Reads an error answer and checks the envelope: code, message and the request id echoed in the header. */
export async function expectError(res: Response, status: number, code: string): Promise<ErrorBody> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = JSON.parse(text) as ErrorBody;
  expect(body.error.code).toBe(code);
  expect(body.error.message).toEqual(expect.any(String));
  expect(body.error.request_id).toBe(res.headers.get('x-request-id'));
  return body;
}

/**
 * Everything the app's engine holds, blobs and the unfinished uploads it can list, by engine reference
 * (fs: the files in STORAGE_PATH and TEMP_PATH; s3: the objects under the app's prefix), sorted.
 */
export function storedFiles(app: TestApp): Promise<string[]> {
  return app.storage.names();
}

/** Every Redis key under the app's prefix. */
export async function redisKeysOf(app: TestApp, pattern = '*'): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await app.deps.redis.scan(cursor, 'MATCH', `${app.deps.keys.prefix}:${pattern}`, 'COUNT', 1000);
    cursor = next;
    found.push(...batch);
  } while (cursor !== '0');
  return found;
}

/** File records, tombstones and blob liveness keys (not rate-limit or queue keys), sorted (SCAN has no order). */
export async function fileKeys(app: TestApp): Promise<string[]> {
  return [...(await redisKeysOf(app, 'file:*')), ...(await redisKeysOf(app, 'blob:*'))].sort();
}

/** Everything under the prefix as text: keys and values (strings, hashes, lists, sets, zsets, streams). */
export async function redisDump(app: TestApp): Promise<string> {
  const { redis } = app.deps;
  const parts: string[] = [];
  for (const key of await redisKeysOf(app)) {
    const type = await redis.type(key);
    parts.push(key);
    if (type === 'string') parts.push((await redis.get(key)) ?? '');
    else if (type === 'hash') parts.push(JSON.stringify(await redis.hgetall(key)));
    else if (type === 'list') parts.push(JSON.stringify(await redis.lrange(key, 0, -1)));
    else if (type === 'set') parts.push(JSON.stringify(await redis.smembers(key)));
    else if (type === 'zset') parts.push(JSON.stringify(await redis.zrange(key, 0, -1, 'WITHSCORES')));
    else if (type === 'stream') parts.push(JSON.stringify(await redis.xrange(key, '-', '+')));
  }
  return parts.join('\n');
}

/**
 * Polls until `check` holds and returns that value; throws when the deadline passes first, so a
 * test can never pass on a condition that never came true.
 */
export async function waitFor<T>(
  probe: () => Promise<T>,
  check: (value: T) => boolean,
  timeoutMs = 5_000,
  what = 'the condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (check(value)) return value;
    if (Date.now() >= deadline) throw new Error(`waited ${timeoutMs} ms for ${what}; last value: ${JSON.stringify(value)?.slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A minimal valid PNG header (signature + IHDR), enough for content detection. */
export const PNG_BYTES = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4d30000000049454e44ae426082',
  'hex',
);

/** A download that has its headers and first bytes, then waits until told to read the rest. */
export interface SlowDownload {
  status: number;
  /** Reads everything that is left; resolves with the whole body and whether it ended cleanly. */
  finish(): Promise<{ body: Buffer; complete: boolean }>;
}

export function startSlowDownload(url: string): Promise<SlowDownload> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: 'application/octet-stream' } }, (res) => {
      const chunks: Buffer[] = [];
      res.once('data', (chunk: Buffer) => {
        chunks.push(chunk);
        res.pause();
        resolve({
          status: res.statusCode ?? 0,
          finish: () =>
            new Promise((done) => {
              res.on('data', (more: Buffer) => chunks.push(more));
              res.once('end', () => done({ body: Buffer.concat(chunks), complete: res.complete }));
              res.once('error', () => done({ body: Buffer.concat(chunks), complete: false }));
              res.resume();
            }),
        });
      });
    });
    req.once('error', reject);
  });
}
