import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { integrityCheckFailed, kdfBusy } from '../../app/crypto/crypto.errors.js';
import { errorHandler, notFoundHandler } from '../../app/http/error-handler.js';
import { AppError } from '../../app/http/errors.js';
import { requestId } from '../../app/http/request-context.js';
import { createLogger } from '../../app/shared/logger.js';
import { Writable } from 'node:stream';
import type { Server } from 'node:http';

describe('the error middleware', () => {
  const lines: Record<string, unknown>[] = [];
  let server: Server;
  let url: string;
  let clock = 0;

  beforeAll(async () => {
    const stream = new Writable({
      write(chunk: Buffer, _e, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    const log = createLogger({ service: 'api', level: 'info', dir: '', stream, silentStdout: true });
    const app = express();
    app.use(requestId());
    app.get('/boom', () => {
      throw new TypeError('boom while reading /srv/secret/apple-banana');
    });
    app.get('/zod', () => {
      z.object({ uses: z.number().max(5) }).parse({ uses: 9 });
    });
    app.get('/app-error', () => {
      throw new AppError({ code: 'FILE_GONE', status: 410, message: 'This file is gone.', extra: { reason: 'burned' } });
    });
    app.get('/integrity', () => {
      throw integrityCheckFailed('chunk_auth', 0, new Error('Unsupported state or unable to authenticate data'));
    });
    app.get('/kdf-busy', () => {
      throw kdfBusy();
    });
    app.get('/redis-down', () => {
      throw new Error("Stream isn't writeable and enableOfflineQueue options is false");
    });
    app.use(notFoundHandler());
    app.use(errorHandler(log, { now: () => clock }));
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('turns an unexpected exception into a generic 500 and logs its stack, not its text, to the client', async () => {
    const res = await fetch(`${url}/boom`);
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain('boom');
    expect(text).not.toContain('/srv');
    expect(JSON.parse(text)).toEqual({
      error: { code: 'INTERNAL_ERROR', message: 'Something went wrong on our side.', request_id: res.headers.get('x-request-id') },
    });
    const logged = lines.find((l) => l.event === 'request_failed');
    expect(logged).toMatchObject({
      level: 'error',
      code: 'INTERNAL_ERROR',
      error: { name: 'TypeError', stack: expect.stringContaining('TypeError') },
    });
  });

  it('turns a ZodError into 400 VALIDATION_FAILED with details naming the field', async () => {
    const res = await fetch(`${url}/zod`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; details: { field: string }[] } };
    expect(body.error.code).toBe('VALIDATION_FAILED');
    expect(body.error.details).toEqual([{ field: 'uses', message: expect.any(String) }]);
  });

  it('keeps an AppError’s code, status and extra fields', async () => {
    const res = await fetch(`${url}/app-error`);
    expect(res.status).toBe(410);
    expect(await res.json()).toEqual({
      error: { code: 'FILE_GONE', message: 'This file is gone.', request_id: expect.any(String), reason: 'burned' },
    });
  });

  it('answers a crypto integrity failure with 500 INTEGRITY_CHECK_FAILED and the generic message', async () => {
    const res = await fetch(`${url}/integrity`);
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({
      error: {
        code: 'INTEGRITY_CHECK_FAILED',
        message: 'The stored file failed its integrity check.',
        request_id: res.headers.get('x-request-id'),
      },
    });
    const logged = lines.find((l) => l.event === 'request_failed' && l.code === 'INTEGRITY_CHECK_FAILED');
    expect(logged).toMatchObject({
      level: 'error',
      error: { name: 'IntegrityCheckFailedError', message: 'integrity check failed: chunk_auth' },
    });
  });

  it('answers a busy KDF with 503 and Retry-After: 1, logged as kdf_busy at warn without a stack, sampled to one line a second', async () => {
    const before = lines.length;
    clock = 10_000;
    const first = await fetch(`${url}/kdf-busy`);
    expect(first.status).toBe(503);
    expect(first.headers.get('retry-after')).toBe('1');
    expect(await first.json()).toEqual({
      error: {
        code: 'SERVICE_UNAVAILABLE',
        message: 'The service is temporarily unavailable. Try again shortly.',
        request_id: first.headers.get('x-request-id'),
      },
    });
    clock = 10_400;
    expect((await fetch(`${url}/kdf-busy`)).status).toBe(503);
    expect((await fetch(`${url}/kdf-busy`)).status).toBe(503);
    clock = 11_000;
    expect((await fetch(`${url}/kdf-busy`)).status).toBe(503);

    const logged = lines.slice(before);
    const busy = logged.filter((l) => l.event === 'kdf_busy');
    expect(busy).toEqual([
      expect.objectContaining({ level: 'warn', code: 'SERVICE_UNAVAILABLE', request_id: first.headers.get('x-request-id'), suppressed: 0 }),
      expect.objectContaining({ level: 'warn', code: 'SERVICE_UNAVAILABLE', suppressed: 2 }),
    ]);
    expect(busy.some((l) => 'error' in l || JSON.stringify(l).includes('stack'))).toBe(false);
    expect(logged.some((l) => l.event === 'redis_unavailable' || l.level === 'error')).toBe(false);
  });

  // Every request repeats it while Redis is away: one line a second, not one per request.
  it('answers Redis away with 503 and logs redis_unavailable at most once a second, counting the rest', async () => {
    const before = lines.length;
    clock = 50_000;
    const first = await fetch(`${url}/redis-down`);
    expect(first.status).toBe(503);
    for (let i = 0; i < 5; i += 1) expect((await fetch(`${url}/redis-down`)).status).toBe(503);
    clock = 51_000;
    expect((await fetch(`${url}/redis-down`)).status).toBe(503);
    const logged = lines.slice(before).filter((l) => l.event === 'redis_unavailable');
    expect(logged).toEqual([
      expect.objectContaining({
        level: 'error',
        code: 'SERVICE_UNAVAILABLE',
        request_id: first.headers.get('x-request-id'),
        suppressed: 0,
      }),
      expect.objectContaining({ level: 'error', suppressed: 5 }),
    ]);
  });
});
