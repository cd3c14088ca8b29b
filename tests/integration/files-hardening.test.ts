/**
 * A file's one-time things against the orders requests can come in, with real Redis: the sender's
 * delete of a burned file whose download then fails before its first byte, download numbers on the
 * receipt across refunds, a preview whose answer failed on the way, and link-preview agents on the
 * upload's preview_url.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobGuard } from '../../app/blobs/blobs.repository.js';
import { downloadNumber, type FilesRepository } from '../../app/files/files.repository.js';
import type { RedisKeys } from '../../app/shared/redis-keys.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { expectError, uploadOk } from '../helpers/files.js';
import { onNextScriptCall, holdNextRead } from '../helpers/interpose.js';
import { NOW, openFileScripts, storeRecord } from '../helpers/file-scripts.js';

describe('the file scripts', () => {
  let redis: Redis;
  let keys: RedisKeys;
  let files: FilesRepository;
  let guard: BlobGuard;

  beforeAll(() => {
    ({ redis, keys, files, guard } = openFileScripts());
  });
  afterAll(() => {
    redis.disconnect();
  });

  const stored = (uses: number) => storeRecord(files, uses);
  const claimed = async (id: string, now = NOW) => {
    const claim = await files.claim(id, { now, leaseId: `lease-${now}`, leaseUntil: now + 15_000 });
    if (claim.kind !== 'found') throw new Error(`expected a claim, got ${claim.kind}`);
    return claim;
  };

  describe("the sender's delete of a burned file", () => {
    it('deletes it for good: the burning claim, refunded after, restores nothing', async () => {
      const { id, record } = await stored(1);
      const burn = await claimed(id);
      expect(burn.extra.burned).toBe(true);
      // The burn's download kept a resume window on the bytes.
      await redis.zadd(keys.blob(record.blob), NOW + 900_000, 'resume');

      expect(await files.remove(id, 'token-hash', NOW + 1)).toEqual({ kind: 'deleted', blob: record.blob });
      expect(await files.refund(id, { record: burn.record, burned: true, now: NOW + 2 })).toBe(false);

      expect(await files.peek(id, NOW + 3)).toEqual({ kind: 'gone', reason: 'deleted' });
      // Only the burning download's own lease still protects the bytes: its resume window ended too.
      expect(await redis.zrange(keys.blob(record.blob), 0, -1)).toEqual([`lease-${NOW}`]);
      expect(await guard.protection(record.blob, NOW + 3)).toMatchObject({ live: false, leases: 1 });
      expect(await files.receipt(id, 'token-hash', NOW + 3)).toMatchObject({ kind: 'found', receipt: { state: 'deleted' } });
    });

    it('answers a wrong token as before (410 burned) and changes nothing', async () => {
      const { id, record } = await stored(1);
      const burn = await claimed(id);
      expect(await files.remove(id, 'another-hash', NOW + 1)).toEqual({ kind: 'gone', reason: 'burned' });
      // Still the burn's: its own failed download may give the use back.
      expect(await files.refund(id, { record: burn.record, burned: true, now: NOW + 2 })).toBe(true);
      expect(await files.peek(id, NOW + 3)).toMatchObject({ kind: 'found', record: { uses: 1, blob: record.blob } });
    });

    it('answers as before (410 burned) once nothing keeps its bytes: the burn is history then', async () => {
      const { id, record } = await stored(1);
      await claimed(id);
      // The burning download's lease ended, and no resume window is open.
      await redis.zrem(keys.blob(record.blob), `lease-${NOW}`);
      expect(await files.remove(id, 'token-hash', NOW + 1)).toEqual({ kind: 'gone', reason: 'burned' });
      expect(await files.receipt(id, 'token-hash', NOW + 2)).toMatchObject({ kind: 'found', receipt: { state: 'burned' } });
    });

    it('answers as before when the receipt predates the blob id it now keeps', async () => {
      const { id } = await stored(1);
      await claimed(id);
      await redis.hdel(keys.receipt(id), 'blob');
      expect(await files.remove(id, 'token-hash', NOW + 1)).toEqual({ kind: 'gone', reason: 'burned' });
      expect(await files.peek(id, NOW + 2)).toEqual({ kind: 'gone', reason: 'burned' });
    });

    it('stays deleted: a second delete answers 410 deleted', async () => {
      const { id } = await stored(1);
      await claimed(id);
      expect((await files.remove(id, 'token-hash', NOW + 1)).kind).toBe('deleted');
      expect(await files.remove(id, 'token-hash', NOW + 2)).toEqual({ kind: 'gone', reason: 'deleted' });
    });
  });

  describe('download numbers on the receipt', () => {
    it('never gives a refunded number out again, so a running download keeps its line', async () => {
      const { id, record } = await stored(3);
      const a = await claimed(id, NOW + 1);
      const b = await claimed(id, NOW + 2);
      // A fails before its first byte; C claims the use A gave back while B is still running.
      expect(await files.refund(id, { record: a.record, burned: false, now: NOW + 3 })).toBe(true);
      const c = await claimed(id, NOW + 4);

      expect(await files.receipt(id, 'token-hash', NOW + 5)).toMatchObject({
        kind: 'found',
        receipt: {
          usesLeft: 1,
          downloads: [
            { startedAt: NOW + 2, completedAt: null },
            { startedAt: NOW + 4, completedAt: null },
          ],
        },
      });

      // B fails too: its refund takes its own line and leaves C's; C then completes.
      expect(await files.refund(id, { record: b.record, burned: false, now: NOW + 6 })).toBe(true);
      await files.finish(id, {
        n: downloadNumber(c.record),
        event: 'completed',
        now: NOW + 7,
        blobId: record.blob,
        leaseId: `lease-${NOW + 4}`,
      });
      expect(await files.receipt(id, 'token-hash', NOW + 8)).toMatchObject({
        kind: 'found',
        receipt: { usesLeft: 2, downloads: [{ startedAt: NOW + 4, completedAt: NOW + 7 }] },
      });
    });
  });
});

describe('the API', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  const curl = (url: string, init: RequestInit = {}) =>
    fetch(url, { ...init, headers: { Accept: '*/*', 'User-Agent': 'curl/8.5.0', ...(init.headers as Record<string, string>) } });

  it('keeps a burned file deleted by its sender when the burning download fails before its first byte', async () => {
    const before = new Set(await app.storage.blobIds());
    const up = await uploadOk(app, 'z'.repeat(5_000), 'z.bin', { uses: '1' });
    const [blob] = (await app.storage.blobIds()).filter((id) => !before.has(id));
    await app.storage.corrupt(blob!, 100); // inside the first chunk: the download fails before its first byte
    const read = holdNextRead(app.deps.store);
    const pending = curl(up.download_url);
    await read.reached; // claimed: the last use, so burned

    const wrong = await curl(up.delete_url, { method: 'DELETE', headers: { 'X-Delete-Token': 'not-the-token' } });
    expect((await expectError(wrong, 410, 'FILE_GONE')).error.reason).toBe('burned');
    expect((await curl(up.delete_url, { method: 'DELETE', headers: { 'X-Delete-Token': up.delete_token } })).status).toBe(204);
    read.open();
    await expectError(await pending, 500, 'INTEGRITY_CHECK_FAILED');

    // The failed download's refund found the file deleted: it stays gone for everyone.
    expect((await expectError(await curl(up.status_url), 410, 'FILE_GONE')).error.reason).toBe('deleted');
    expect((await expectError(await curl(up.download_url), 410, 'FILE_GONE')).error.reason).toBe('deleted');
  });

  it('answers a truncated blob as what it is, on either engine: 500 INTEGRITY_CHECK_FAILED, spending nothing, never a 503 to retry', async () => {
    const body = randomBytes(300_000);
    for (const [what, keep] of [
      ['inside the header', 20],
      ['inside the first chunk', 1_000],
      ['after the first chunk', 200_000],
    ] as const) {
      const before = new Set(await app.storage.blobIds());
      const up = await uploadOk(app, body, 'cut.bin', { uses: '2' });
      const [blob] = (await app.storage.blobIds()).filter((id) => !before.has(id));
      await app.storage.truncate(blob!, keep);
      const res = await curl(up.download_url);
      if (keep < 65_536) {
        await expectError(res, 500, 'INTEGRITY_CHECK_FAILED');
        expect((await (await curl(up.status_url)).json()) as { remaining_uses: number }, what).toMatchObject({ remaining_uses: 2 });
      } else {
        // Past the first verified chunk the answer has started: it is cut off, and no unverified byte is sent.
        expect(res.status, what).toBe(200);
        const received = await res.arrayBuffer().then(
          (bytes) => Buffer.from(bytes),
          () => null,
        );
        expect(received === null || received.length < body.length, what).toBe(true);
      }
    }
  });

  it('leaves the preview unused when its answer fails on the way (the lookup slot cannot be settled)', async () => {
    const up = await uploadOk(app, 'preview me', 'p.txt');
    onNextScriptCall(app, 'cbxSettle', () => Promise.reject(new Error('Connection is closed.')));
    await expectError(await curl(up.preview_url), 503, 'SERVICE_UNAVAILABLE');

    const res = await curl(up.preview_url);
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await res.json()).toMatchObject({ key: up.key, filename: 'p.txt', uses: 1 });
    await expectError(await curl(up.preview_url), 410, 'PREVIEW_ALREADY_USED');
  });

  it('sends link-preview agents and browser navigations of preview_url to the page, spending nothing', async () => {
    const up = await uploadOk(app, 'unfurl me', 'u.txt');
    const visitors = [
      { 'User-Agent': 'Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)', Accept: '*/*' },
      { 'User-Agent': 'Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)', Accept: 'application/json' },
      { 'User-Agent': 'Mozilla/5.0 Firefox/128.0', Accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' },
    ];
    for (const headers of visitors) {
      for (const method of ['GET', 'HEAD']) {
        const res = await fetch(up.preview_url, { method, headers, redirect: 'manual' });
        expect(res.status, `${method} ${headers['User-Agent']}`).toBe(303);
        expect(res.headers.get('location')).toBe(`/d#${up.key}`);
        expect(res.headers.get('cache-control')).toBe('no-store');
      }
    }

    const res = await curl(up.preview_url);
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await res.json()).toMatchObject({ key: up.key, filename: 'u.txt' });
  });
});
