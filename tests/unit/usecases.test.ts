/**
 * The file use cases' orchestration with in-memory fakes and a hand-moved clock (tests/helpers/fakes.ts):
 * what is written, queued, leased, refunded and released, in which order — without Redis or a disk.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { newResumeCapability } from '../../app/crypto/resume.js';
import { HEADER_LENGTH } from '../../app/crypto/stream.js';
import {
  createTicket,
  downloadByKey,
  downloadByTicket,
  type Download,
  type DownloadStart,
} from '../../app/downloads/downloads.usecases.js';
import { receiveUpload } from '../../app/uploads/uploads.usecases.js';
import { deleteFile, fileStatus } from '../../app/lookups/lookups.usecases.js';
import { createKdf } from '../../app/kdf/kdf.js';
import { FAKE_SECRET, fakeWorld } from '../helpers/fakes.js';

const who = { client: '192.0.2.1', aggregate: '192.0.2.0/24' };
const options = (uses = 1) => ({ expiry: 10, uses, words: 4 });

async function upload(world: ReturnType<typeof fakeWorld>, body: string | Buffer, uses = 1) {
  const pending = await receiveUpload(world.deps, { source: Readable.from([Buffer.from(body)]), who, words: 4 });
  return pending.register({ filename: 'notes.txt', options: options(uses) });
}

async function readAll(download: Download): Promise<Buffer> {
  const parts = download.first ? [download.first] : [];
  for await (const part of download.body) parts.push(part as Buffer);
  await download.finish({ complete: true });
  return Buffer.concat(parts);
}

function ready(start: DownloadStart): Download {
  if (start.kind !== 'ready') throw new Error(`expected a download, got ${start.kind}`);
  return start.download;
}

const live = () => new AbortController().signal;

/**
 * Replaces the world's KDF with one whose derivations finish only when the test lets them: one slot,
 * and one derivation running or queued per client (a second from the same client is refused at once).
 */
function gatedKdf(world: ReturnType<typeof fakeWorld>) {
  const waiting: (() => void)[] = [];
  let derivations = 0;
  world.deps.kdf = createKdf({
    secret: FAKE_SECRET,
    concurrency: 1,
    maxPerClient: 1,
    deriveKeys: ({ passphrase }) => {
      derivations += 1;
      const master = createHash('sha512').update(passphrase).digest();
      return new Promise((resolve) =>
        waiting.push(() => resolve({ lookupId: master.subarray(0, 32).toString('hex'), kek: master.subarray(32) })),
      );
    },
  });
  return { release: () => waiting.shift()!(), waiting: () => waiting.length, derivations: () => derivations };
}

/** A body that says whether anything asked it for a byte, and a store that counts the blobs begun. */
function watched(world: ReturnType<typeof fakeWorld>, body: string) {
  let read = false;
  const source = new Readable({
    read() {
      read = true;
      this.push(Buffer.from(body));
      this.push(null);
    },
  });
  const begun: string[] = [];
  const create = world.store.create.bind(world.store);
  world.store.create = (blobId) => {
    begun.push(blobId);
    return create(blobId);
  };
  return { source, wasRead: () => read, begun };
}

const leases = (world: ReturnType<typeof fakeWorld>) => [...world.guard.members.values()].flatMap((members) => [...members.keys()]);

describe('uploads (in memory)', () => {
  it('queues the expire job before writing the record, then lets the record protect the blob', async () => {
    const world = fakeWorld();
    const uploaded = await upload(world, 'hello');
    expect(world.jobs.map((j) => j.name)).toEqual(['expire']);
    expect(world.jobs[0]!.delayMs).toBe(10 * 60_000);
    const [blobId] = world.store.blobs.keys();
    // The upload's own lease is gone; only the record's `live` protection remains, until the expiry.
    expect([...world.guard.members.get(blobId!)!.keys()]).toEqual(['live']);
    expect((await fileStatus(world.deps, { key: uploaded.key, who })).kind).toBe('found');
  });

  it('wipes the KEK and the data key once the record holds them wrapped; the file still opens', async () => {
    const world = fakeWorld();
    const keks: Buffer[] = [];
    const derive = world.deps.kdf.derive;
    world.deps.kdf = {
      ...world.deps.kdf,
      derive: async (passphrase, requester) => {
        const keys = await derive(passphrase, requester);
        keks.push(keys.kek);
        return keys;
      },
    };
    const pending = await receiveUpload(world.deps, { source: Readable.from([Buffer.from('secret body')]), who, words: 4 });
    const uploaded = await pending.register({ filename: 'notes.txt', options: options() });
    expect(keks).toHaveLength(1);
    expect(keks[0]!.every((byte) => byte === 0)).toBe(true);
    expect(pending.stored.dataKey.every((byte) => byte === 0)).toBe(true);
    expect((await readAll(ready(await downloadByKey(world.deps, { key: uploaded.key, who, signal: live() })))).toString()).toBe(
      'secret body',
    );
  });

  it('removes a record whose store ran but whose answer was lost, before its blob goes', async () => {
    const world = fakeWorld();
    const store = world.files.store.bind(world.files);
    world.files.store = async (...args: Parameters<typeof store>) => {
      await store(...args);
      throw new Error('Command timed out');
    };
    const pending = await receiveUpload(world.deps, { source: Readable.from([Buffer.from('x')]), who, words: 4 });
    await expect(pending.register({ filename: 'x', options: options() })).rejects.toThrow('Command timed out');
    expect(world.store.blobs.size).toBe(0);
    expect([...world.files.records.keys()]).toEqual([]);
  });

  it('removes the stored blob and every lease when the record cannot be written', async () => {
    const world = fakeWorld();
    world.files.store = () => Promise.resolve(false); // every passphrase drawn is "taken"
    const pending = await receiveUpload(world.deps, { source: Readable.from([Buffer.from('x')]), who, words: 4 });
    await expect(pending.register({ filename: 'x', options: options() })).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    expect(world.store.blobs.size).toBe(0);
    for (const members of world.guard.members.values()) expect([...members.keys()]).toEqual([]);
  });
});

describe('an upload and the KDF (in memory)', () => {
  it('derives its keys before it reads a byte of its body: while it waits, nothing is read, stored or leased', async () => {
    const world = fakeWorld();
    const kdf = gatedKdf(world);
    const body = watched(world, 'hello');
    const pending = receiveUpload(world.deps, { source: body.source, who, words: 4 });
    await vi.waitFor(() => expect(kdf.waiting()).toBe(1));
    expect({ read: body.wasRead(), begun: body.begun, leases: leases(world) }).toEqual({ read: false, begun: [], leases: [] });

    kdf.release();
    const uploaded = await (await pending).register({ filename: 'notes.txt', options: options() });
    expect({ read: body.wasRead(), begun: body.begun.length, derivations: kdf.derivations() }).toEqual({
      read: true,
      begun: 1,
      derivations: 1,
    });
    // The record is under the keys derived before the body (a lookup derives them again).
    const status = fileStatus(world.deps, { key: uploaded.key, who });
    await vi.waitFor(() => expect(kdf.waiting()).toBe(1));
    kdf.release();
    expect((await status).kind).toBe('found');
  });

  it('is refused at once when its client is over its KDF share, before its body is read, leaving nothing', async () => {
    const world = fakeWorld();
    const kdf = gatedKdf(world);
    const first = receiveUpload(world.deps, { source: Readable.from([Buffer.from('first')]), who, words: 4 });
    await vi.waitFor(() => expect(kdf.waiting()).toBe(1));
    const body = watched(world, 'second');
    await expect(receiveUpload(world.deps, { source: body.source, who, words: 4 })).rejects.toMatchObject({ code: 'KDF_BUSY' });
    expect({ read: body.wasRead(), begun: body.begun, leases: leases(world), derivations: kdf.derivations() }).toEqual({
      read: false,
      begun: [],
      leases: [],
      derivations: 1,
    });
    kdf.release();
    await (await first).register({ filename: 'first.txt', options: options() });
    expect(world.store.blobs.size).toBe(1);
  });

  it('refuses a declared size over MAX_FILE_SIZE before any derivation', async () => {
    const world = fakeWorld({ MAX_FILE_SIZE: '1000' });
    const kdf = gatedKdf(world);
    const body = watched(world, 'x'.repeat(2000));
    await expect(receiveUpload(world.deps, { source: body.source, who, words: 4, expectedSize: 2000 })).rejects.toMatchObject({
      code: 'FILE_TOO_LARGE',
    });
    expect({ read: body.wasRead(), begun: body.begun, derivations: kdf.derivations() }).toEqual({ read: false, begun: [], derivations: 0 });
  });
});

describe('downloads (in memory)', () => {
  it('claims the last use, queues the shred at the burn, and queues it again when the lease ends', async () => {
    const world = fakeWorld({ RESUME_WINDOW_SECONDS: '0' });
    const { key } = await upload(world, 'one time only');
    const download = ready(await downloadByKey(world.deps, { key, who, signal: live() }));
    const [blobId] = world.store.blobs.keys();
    expect(world.jobs.filter((j) => j.name === 'shred').map((j) => j.payload)).toEqual([
      { blobId, reason: 'burned', burn: expect.any(String) },
    ]);
    expect((await world.guard.protection(blobId!, world.clock.ms())).leases).toBe(1);

    expect((await readAll(download)).toString()).toBe('one time only');
    const shreds = world.jobs.filter((j) => j.name === 'shred').map((j) => j.payload);
    // The burn's job and the lease end's are two causes with two ids: both name this claim's lease.
    const lease = (shreds[1] as { lease: string }).lease;
    expect(shreds).toEqual([
      { blobId, reason: 'burned', burn: lease },
      { blobId, reason: 'burned', lease },
    ]);
  });

  it('queues the shred of a burn to run once the resume window that keeps its bytes is over; at once with resume off', async () => {
    const shredsAfterBurning = async (window: string) => {
      const world = fakeWorld({ RESUME_WINDOW_SECONDS: window });
      const { key } = await upload(world, 'one time only');
      expect((await readAll(ready(await downloadByKey(world.deps, { key, who, signal: live() })))).toString()).toBe('one time only');
      return world.jobs.filter((j) => j.name === 'shred').map(({ payload, delayMs }) => ({ payload, delayMs }));
    };
    // The window keeps the bytes after the last byte is sent, so the lease's end queues nothing.
    expect(await shredsAfterBurning('900')).toEqual([
      { payload: { blobId: expect.any(String), reason: 'burned', burn: expect.any(String) }, delayMs: 901_000 },
    ]);
    expect(await shredsAfterBurning('0')).toEqual([
      { payload: { blobId: expect.any(String), reason: 'burned', burn: expect.any(String) }, delayMs: 0 },
      { payload: { blobId: expect.any(String), reason: 'burned', lease: expect.any(String) }, delayMs: undefined },
    ]);
  });

  it('gives exactly its use back, and closes the blob, when the first chunk fails', async () => {
    const world = fakeWorld();
    const { key } = await upload(world, 'a'.repeat(1000), 2);
    const [blobId] = world.store.blobs.keys();
    world.store.corrupt(blobId!, HEADER_LENGTH + 10);
    await expect(downloadByKey(world.deps, { key, who, signal: live() })).rejects.toMatchObject({ code: 'INTEGRITY_CHECK_FAILED' });
    const status = await fileStatus(world.deps, { key, who });
    expect(status.kind === 'found' && status.value.record.uses).toBe(2);
    expect((await world.guard.protection(blobId!, world.clock.ms())).leases).toBe(0);
  });

  it('removes the resume record and gives the use back when the route cancels before the first byte', async () => {
    const world = fakeWorld();
    const { key } = await upload(world, 'cancelled');
    const download = ready(await downloadByKey(world.deps, { key, who, signal: live() }));
    const capability = newResumeCapability({ token: Buffer.from(download.etag!.slice(4, -1), 'base64url') });
    await download.cancel();
    const status = await fileStatus(world.deps, { key, who });
    expect(status.kind === 'found' && status.value.record.uses).toBe(1);
    expect(leases(world).sort()).toEqual(['live', 'resume']);
    // Its capability never reached the client and opens nothing: a Range with it is a new download.
    const again = ready(await downloadByKey(world.deps, { key, who, signal: live(), resume: { capability, range: { start: 2 } } }));
    expect(again.range).toBeNull();
  });

  it('serves a download whose file was deleted while it started, with no resume capability', async () => {
    const world = fakeWorld();
    const uploaded = await upload(world, 'deleted meanwhile', 2);
    const read = world.store.read.bind(world.store);
    world.store.read = async (blobId, range) => {
      expect((await deleteFile(world.deps, { key: uploaded.key, token: uploaded.deleteToken, who })).kind).toBe('found');
      return read(blobId, range);
    };
    const download = ready(await downloadByKey(world.deps, { key: uploaded.key, who, signal: live() }));
    expect(download.etag).toBeNull();
    expect((await readAll(download)).toString()).toBe('deleted meanwhile');
    const [blobId] = world.store.blobs.keys();
    expect(await world.guard.protection(blobId!, world.clock.ms())).toEqual({ live: false, leases: 0, until: null });
  });

  it('resumes nothing once the window is over, even while the record is still readable', async () => {
    const world = fakeWorld({ RESUME_WINDOW_SECONDS: '60' });
    const { key } = await upload(world, 'x'.repeat(1000));
    const first = ready(await downloadByKey(world.deps, { key, who, signal: live() }));
    first.body.destroy();
    await first.finish({ complete: false });
    const capability = newResumeCapability({ token: Buffer.from(first.etag!.slice(4, -1), 'base64url') });
    world.clock.advance(60_000);
    // The janitor may be destroying the bytes now: no lease is taken, and the burned file stays gone.
    expect(await downloadByKey(world.deps, { key, who, signal: live(), resume: { capability, range: { start: 5 } } })).toEqual({
      kind: 'gone',
      reason: 'burned',
    });
    expect(leases(world)).toEqual(['resume']);
  });

  it('claims nothing for a client that is already gone', async () => {
    const world = fakeWorld();
    const { key } = await upload(world, 'kept');
    const gone = new AbortController();
    gone.abort();
    expect((await downloadByKey(world.deps, { key, who, signal: gone.signal })).kind).toBe('client_gone');
    const status = await fileStatus(world.deps, { key, who });
    expect(status.kind === 'found' && status.value.record.uses).toBe(1);
  });

  it('resumes a burned download from its capability, spending nothing; another capability starts a new download', async () => {
    const world = fakeWorld();
    const body = Buffer.from('0123456789'.repeat(10_000));
    const { key } = await upload(world, body);
    const first = ready(await downloadByKey(world.deps, { key, who, signal: live() }));
    // The connection drops after the first bytes: the use stays spent (and burned the file).
    first.body.destroy();
    await first.finish({ complete: false });
    const capability = newResumeCapability({ token: Buffer.from(first.etag!.slice(4, -1), 'base64url') });

    const resumed = ready(await downloadByKey(world.deps, { key, who, signal: live(), resume: { capability, range: { start: 5 } } }));
    expect(resumed.range).toMatchObject({ start: 5, end: body.length - 1, length: body.length - 5 });
    expect((await readAll(resumed)).equals(body.subarray(5))).toBe(true);

    const stranger = await downloadByKey(world.deps, {
      key,
      who,
      signal: live(),
      resume: { capability: newResumeCapability(), range: { start: 5 } },
    });
    expect(stranger).toEqual({ kind: 'gone', reason: 'burned' });
  });

  it('lets the recipient page download by ticket once, then resume by the same ticket', async () => {
    const world = fakeWorld();
    const body = Buffer.from('ticketed content');
    const { key } = await upload(world, body, 2);
    const ticket = await createTicket(world.deps, { key, who });
    if (ticket.kind !== 'found') throw new Error('no ticket');
    const capability = newResumeCapability({ token: Buffer.from(ticket.value.token, 'base64url') });

    const download = ready(await downloadByTicket(world.deps, { capability, signal: live() }));
    expect(download.etag).toBe(capability.etag);
    expect((await readAll(download)).equals(body)).toBe(true);
    // The ticket served its one claim; its resume still works.
    expect((await downloadByTicket(world.deps, { capability, signal: live() })).kind).toBe('missing');
    const resumed = ready(await downloadByTicket(world.deps, { capability, signal: live(), range: { start: 9 } }));
    expect((await readAll(resumed)).toString()).toBe('content');
    const status = await fileStatus(world.deps, { key, who });
    expect(status.kind === 'found' && status.value.record.uses).toBe(1);
  });
});
