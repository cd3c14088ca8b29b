/**
 * The file record's Lua scripts, called directly against the suite's real Redis in the orders that
 * concurrent requests can produce (claim, delete, refund, expiry). Each answer must leave the
 * record, its tombstone and its blob's protection consistent.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newBlobId } from '../../app/blobs/blob-id.js';
import type { BlobGuard } from '../../app/blobs/blobs.repository.js';
import type { FilesRepository } from '../../app/files/files.repository.js';
import { lookupId, NOW, openFileScripts, storeRecord } from '../helpers/file-scripts.js';

describe('the file scripts, interleaved', () => {
  let redis: Redis;
  let files: FilesRepository;
  let guard: BlobGuard;

  beforeAll(() => {
    ({ redis, files, guard } = openFileScripts());
  });
  afterAll(() => {
    redis.disconnect();
  });

  const stored = (uses: number) => storeRecord(files, uses);
  const claim = (id: string, now = NOW) =>
    files.claim(id, { now, leaseId: `lease-${Math.random()}`.slice(0, 16), leaseUntil: now + 15_000 });

  it('keeps a file deleted when a claim made before the delete is refunded', async () => {
    const { id, record } = await stored(2);
    const claimed = await claim(id);
    expect(claimed).toMatchObject({ kind: 'found', extra: { burned: false }, record: { uses: 1 } });

    expect(await files.remove(id, 'token-hash', NOW)).toEqual({ kind: 'deleted', blob: record.blob });
    expect(await files.refund(id, { record, burned: false, now: NOW })).toBe(false);

    expect(await files.peek(id, NOW)).toEqual({ kind: 'gone', reason: 'deleted' });
    expect((await guard.protection(record.blob, NOW)).live).toBe(false);
  });

  it('restores exactly the record that its own claim burned, live again with one use', async () => {
    const { id, record } = await stored(1);
    const claimed = await claim(id);
    expect(claimed).toMatchObject({ kind: 'found', extra: { burned: true } });
    expect(await files.peek(id, NOW)).toEqual({ kind: 'gone', reason: 'burned' });
    expect((await guard.protection(record.blob, NOW)).live).toBe(false);

    expect(await files.refund(id, { record: claimed.kind === 'found' ? claimed.record : record, burned: true, now: NOW })).toBe(true);

    const back = await files.peek(id, NOW);
    expect(back).toMatchObject({ kind: 'found', record: { uses: 1, blob: record.blob, expires: record.expires } });
    expect((await guard.protection(record.blob, NOW)).live).toBe(true);
  });

  it('keeps a file burned by another request when an earlier claim is refunded', async () => {
    const { id, record } = await stored(2);
    expect(await claim(id)).toMatchObject({ extra: { burned: false } });
    expect(await claim(id)).toMatchObject({ extra: { burned: true } });

    expect(await files.refund(id, { record, burned: false, now: NOW })).toBe(false);

    expect(await files.peek(id, NOW)).toEqual({ kind: 'gone', reason: 'burned' });
  });

  it('gives nothing back once the file has expired, whichever claim it was', async () => {
    const a = await stored(2);
    expect(await claim(a.id)).toMatchObject({ extra: { burned: false } });
    const late = NOW + 61_000;
    expect(await files.refund(a.id, { record: a.record, burned: false, now: late })).toBe(false);
    expect(await files.peek(a.id, late)).toEqual({ kind: 'gone', reason: 'expired' });

    const b = await stored(1);
    expect(await claim(b.id)).toMatchObject({ extra: { burned: true } });
    expect(await files.refund(b.id, { record: b.record, burned: true, now: late })).toBe(false);
    expect(await files.peek(b.id, late)).toEqual({ kind: 'gone', reason: 'burned' });
  });

  it('gives one use back to a live record, and never more than its claim took', async () => {
    const { id, record } = await stored(3);
    await claim(id);
    await claim(id);
    expect(await files.refund(id, { record, burned: false, now: NOW })).toBe(true);
    expect(await files.peek(id, NOW)).toMatchObject({ kind: 'found', record: { uses: 2 } });
  });

  it("hands an upload's lease over to the record it stores; a taken lookup id leaves the lease held", async () => {
    const { id, record } = await stored(1);
    const blob = newBlobId();
    await guard.lease(blob, 'upload-lease', NOW + 15_000);
    expect(await files.store(id, { ...record, blob }, 'upload-lease')).toBe(false);
    expect(await guard.protection(blob, NOW)).toEqual({ live: false, leases: 1, until: NOW + 15_000 });

    const fresh = lookupId();
    expect(await files.store(fresh, { ...record, blob }, 'upload-lease')).toBe(true);
    expect(await guard.protection(blob, NOW)).toEqual({ live: true, leases: 0, until: record.expires });
  });

  it("ends a download in one step: the receipt's line and the lease; what still protects the blob comes back", async () => {
    const { id, record } = await stored(2);
    await files.claim(id, { now: NOW, leaseId: 'first-download', leaseUntil: NOW + 15_000 });
    expect(await files.finish(id, { n: 1, event: 'completed', now: NOW + 1, blobId: record.blob, leaseId: 'first-download' })).toEqual({
      live: true,
      leases: 0,
      until: record.expires,
    });

    // The last use burns the file; a download that did not complete notes nothing but still ends its lease.
    await files.claim(id, { now: NOW + 2, leaseId: 'last-download', leaseUntil: NOW + 15_000 });
    expect(await files.finish(id, { n: 2, event: null, now: NOW + 3, blobId: record.blob, leaseId: 'last-download' })).toEqual({
      live: false,
      leases: 0,
      until: null,
    });
    expect(await files.receipt(id, 'token-hash', NOW + 4)).toMatchObject({
      kind: 'found',
      receipt: {
        state: 'burned',
        downloads: [
          { startedAt: NOW, completedAt: NOW + 1 },
          { startedAt: NOW + 2, completedAt: null },
        ],
      },
    });
  });

  it('leases the blob with every claim; a burn or a delete drops only the record protection', async () => {
    const burnt = await stored(1);
    await claim(burnt.id);
    expect(await guard.protection(burnt.record.blob, NOW)).toEqual({ live: false, leases: 1, until: NOW + 15_000 });

    const deleted = await stored(2);
    await claim(deleted.id);
    await files.remove(deleted.id, 'token-hash', NOW);
    expect(await guard.protection(deleted.record.blob, NOW)).toEqual({ live: false, leases: 1, until: NOW + 15_000 });
    // A lease past its end protects nothing.
    expect((await guard.protection(deleted.record.blob, NOW + 15_000)).until).toBeNull();
  });

  it('refuses a delete with the wrong token and changes nothing', async () => {
    const { id, record } = await stored(1);
    expect(await files.remove(id, 'another-hash', NOW)).toEqual({ kind: 'forbidden' });
    expect(await files.peek(id, NOW)).toMatchObject({ kind: 'found', record: { uses: 1 } });
    expect((await guard.protection(record.blob, NOW)).live).toBe(true);
  });
});
