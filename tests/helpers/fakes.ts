/**
 * In-memory stand-ins for the use cases' dependencies (the fast tier: no Redis, no disk, no clock):
 * a blob store, blob protection, a file-record repository with the same answers as the Lua scripts,
 * a job queue that records, a fast KDF. The real ones are tested against real Redis and real disks
 * elsewhere; these let the use cases' orchestration be tested in milliseconds.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import type { BlobStore, StoredEntry } from '../../app/blobs/blob-store.js';
import type { BlobGuard, Protection } from '../../app/blobs/blobs.repository.js';
import { loadConfig, type RuntimeConfig } from '../../app/config.js';
import { parseWordlist, type Wordlist } from '../../app/diceware/wordlist.js';
import type { ResumeRecord, ResumeRepository, TicketRecord } from '../../app/downloads/resume.repository.js';
import type { DownloadsDeps } from '../../app/downloads/downloads.usecases.js';
import { downloadNumber, type FileRecord, type FilesRepository, type GoneReason, type Lookup } from '../../app/files/files.repository.js';
import type { Enqueue } from '../../app/jobs/enqueue.js';
import type { JobName, JobPayload } from '../../app/jobs/catalogue.js';
import { createKdf } from '../../app/kdf/kdf.js';
import { createSilentLogger } from '../../app/shared/logger.js';
import { ROOT } from './processes.js';

export const FAKE_SECRET = 'fake-secret-0123456789-abcdefghijklmnopqrstuvwxyz';

export function testWordlist(): Wordlist {
  return parseWordlist(readFileSync(path.join(ROOT, 'data', 'eff_large_wordlist.txt'), 'utf8'));
}

/** A clock the test moves by hand. */
export function fakeClock(start = Date.UTC(2026, 10, 28, 12)) {
  let now = start;
  return { now: () => new Date(now), ms: () => now, advance: (ms: number) => void (now += ms) };
}

export function memoryStore(): BlobStore & { blobs: Map<string, Buffer>; corrupt(blobId: string, at: number): void } {
  const blobs = new Map<string, Buffer>();
  return {
    engine: 'fs',
    blobs,
    corrupt: (blobId, at) => {
      const blob = blobs.get(blobId)!;
      blob[at] = blob[at]! ^ 1;
    },
    create(blobId) {
      const parts: Buffer[] = [];
      const stream = new PassThrough();
      stream.on('data', (part: Buffer) => parts.push(part));
      return {
        stream,
        commit: () => {
          blobs.set(blobId, Buffer.concat(parts));
          return Promise.resolve();
        },
        abort: () => {
          blobs.delete(blobId);
          return Promise.resolve();
        },
      };
    },
    read(blobId, range) {
      const blob = blobs.get(blobId);
      if (!blob) return Promise.reject(Object.assign(new Error('no such blob'), { code: 'ENOENT' }));
      return Promise.resolve(Readable.from([range ? blob.subarray(range.start, range.end + 1) : blob]));
    },
    destroy(blobId) {
      const size = blobs.get(blobId)?.length ?? 0;
      return Promise.resolve({ found: blobs.delete(blobId), size });
    },
    async *list(): AsyncIterable<StoredEntry> {
      for (const [blobId, blob] of blobs) yield { blobId, kind: 'blob', modifiedMs: 0, size: blob.length, ref: blobId };
    },
    destroyEntry(entry) {
      return Promise.resolve({ found: blobs.delete(entry.ref), size: entry.size });
    },
    freeBytes: () => Promise.resolve(Infinity),
    usedBytes: () => Promise.resolve([...blobs.values()].reduce((n, b) => n + b.length, 0)),
    check: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}

/** Protection as sorted sets of member → end (ms), like blobs.repository.ts keeps them in Redis. */
export function memoryGuard(): BlobGuard & { members: Map<string, Map<string, number>> } {
  const members = new Map<string, Map<string, number>>();
  const of = (blobId: string) => members.get(blobId) ?? members.set(blobId, new Map()).get(blobId)!;
  const protection = (blobId: string, now: number): Protection => {
    let live = false;
    let leases = 0;
    let until: number | null = null;
    for (const [member, end] of of(blobId)) {
      if (end <= now) continue;
      if (member === 'live') live = true;
      else leases += 1;
      until = Math.max(until ?? 0, end);
    }
    return { live, leases, until };
  };
  return {
    members,
    lease: (blobId, leaseId, until) => {
      of(blobId).set(leaseId, until);
      return Promise.resolve();
    },
    release: (blobId, leaseId, now) => {
      of(blobId).delete(leaseId);
      return Promise.resolve(protection(blobId, now));
    },
    protection: (blobId, now) => Promise.resolve(protection(blobId, now)),
    lockDestroy: () => Promise.resolve({ extend: () => Promise.resolve(), release: () => Promise.resolve() }),
  };
}

/** The file scripts' answers (store, claim, refund, peek, preview, delete) over plain maps. */
export function memoryFiles(
  guard: ReturnType<typeof memoryGuard>,
): FilesRepository & { records: Map<string, FileRecord>; tombstones: Map<string, GoneReason> } {
  const records = new Map<string, FileRecord>();
  const tombstones = new Map<string, GoneReason>();
  const receipts = new Map<string, Map<string, number | string>>();
  const notLive = (id: string): Lookup<never> => (tombstones.has(id) ? { kind: 'gone', reason: tombstones.get(id)! } : { kind: 'missing' });
  const live = (id: string, now: number) => {
    const record = records.get(id);
    return record && record.expires > now ? record : null;
  };
  return {
    records,
    tombstones,
    confirmReplicated: () => Promise.resolve(),
    store: (id, record, uploadLease) => {
      if (records.has(id) || tombstones.has(id)) return Promise.resolve(false);
      records.set(id, { ...record });
      tombstones.set(id, 'expired');
      receipts.set(
        id,
        new Map<string, number | string>([
          ['dt', record.dt],
          ['total', record.totalUses],
        ]),
      );
      const members = guard.members.get(record.blob) ?? new Map<string, number>();
      members.set('live', record.expires);
      if (uploadLease !== undefined) members.delete(uploadLease);
      guard.members.set(record.blob, members);
      return Promise.resolve(true);
    },
    claim: (id, { now, leaseId, leaseUntil }) => {
      const record = live(id, now);
      if (!record) {
        const receipt = receipts.get(id);
        if (receipt && tombstones.has(id)) receipt.set('refused', Number(receipt.get('refused') ?? 0) + 1);
        return Promise.resolve(notLive(id));
      }
      record.uses -= 1;
      receipts.get(id)?.set(`s${downloadNumber(record)}`, now);
      const claimed = { ...record };
      guard.members.get(record.blob)!.set(leaseId, leaseUntil);
      const burned = record.uses <= 0;
      if (burned) {
        records.delete(id);
        tombstones.set(id, 'burned');
        guard.members.get(record.blob)!.delete('live');
      }
      return Promise.resolve({ kind: 'found', record: claimed, extra: { burned } });
    },
    refund: (id, { record, burned, now }) => {
      receipts.get(id)?.delete(`s${downloadNumber(record)}`);
      if (!burned) {
        const current = live(id, now);
        if (current) current.uses += 1;
        return Promise.resolve(current !== null);
      }
      if (records.has(id) || tombstones.get(id) !== 'burned' || record.expires <= now) return Promise.resolve(false);
      records.set(id, { ...record, uses: 1 });
      tombstones.set(id, 'expired');
      guard.members.get(record.blob)!.set('live', record.expires);
      return Promise.resolve(true);
    },
    peek: (id, now) => {
      const record = live(id, now);
      return Promise.resolve(record ? { kind: 'found', record: { ...record }, extra: null } : notLive(id));
    },
    preview: (id, now) => {
      const record = live(id, now);
      if (!record) return Promise.resolve(notLive(id));
      if (record.previewed) return Promise.resolve({ kind: 'used' });
      record.previewed = true;
      receipts.get(id)?.set('preview', now);
      return Promise.resolve({ kind: 'found', record: { ...record }, extra: null });
    },
    receipt: (id, tokenHash, now) => {
      const receipt = receipts.get(id);
      if (!receipt) return Promise.resolve({ kind: 'missing' as const });
      if (receipt.get('dt') !== tokenHash) return Promise.resolve({ kind: 'forbidden' as const });
      const record = live(id, now);
      const time = (field: string) => (receipt.has(field) ? Number(receipt.get(field)) : null);
      const total = Number(receipt.get('total'));
      const downloads = Array.from({ length: total }, (_, i) => ({ startedAt: time(`s${i + 1}`), completedAt: time(`c${i + 1}`) })).filter(
        (d): d is { startedAt: number; completedAt: number | null } => d.startedAt !== null,
      );
      return Promise.resolve({
        kind: 'found' as const,
        receipt: {
          state: record ? ('active' as const) : (tombstones.get(id) ?? 'expired'),
          usesLeft: record?.uses ?? 0,
          totalUses: total,
          previewedAt: time('preview'),
          downloads,
          resumes: Number(receipt.get('resumes') ?? 0),
          lastResumedAt: time('resumed'),
          refusedAfterEnd: Number(receipt.get('refused') ?? 0),
        },
      });
    },
    finish: (id, { n, event, now, blobId, leaseId }) => {
      const receipt = receipts.get(id);
      if (receipt && event !== null) {
        if (event !== 'completed') {
          receipt.set('resumes', Number(receipt.get('resumes') ?? 0) + 1);
          receipt.set('resumed', now);
        }
        if (event !== 'resumed') receipt.set(`c${n}`, now);
      }
      return guard.release(blobId, leaseId, now);
    },
    remove: (id, tokenHash, now) => {
      const record = live(id, now);
      if (!record)
        return Promise.resolve(tombstones.has(id) ? { kind: 'gone' as const, reason: tombstones.get(id)! } : { kind: 'missing' as const });
      if (record.dt !== tokenHash) return Promise.resolve({ kind: 'forbidden' });
      records.delete(id);
      tombstones.set(id, 'deleted');
      guard.members.get(record.blob)!.delete('live');
      guard.members.get(record.blob)!.delete('resume');
      return Promise.resolve({ kind: 'deleted', blob: record.blob });
    },
  };
}

export function memoryResumes(
  guard: ReturnType<typeof memoryGuard>,
  files: Pick<ReturnType<typeof memoryFiles>, 'tombstones'>,
): ResumeRepository {
  const resumes = new Map<string, ResumeRecord>();
  const tickets = new Map<string, TicketRecord>();
  const deleted = (lookup: string) => files.tombstones.get(lookup) === 'deleted';
  return {
    store: (id, record, until) => {
      if (deleted(record.lookup)) return Promise.resolve(false);
      resumes.set(id, record);
      const members = guard.members.get(record.blob);
      if (members && until > (members.get('resume') ?? 0)) members.set('resume', until);
      return Promise.resolve(true);
    },
    remove: (id) => {
      resumes.delete(id);
      return Promise.resolve();
    },
    lease: (id, record, lease) => {
      if (deleted(record.lookup)) return Promise.resolve('deleted');
      const windowEnd = guard.members.get(record.blob)?.get('resume') ?? 0;
      if (!resumes.has(id) || windowEnd <= lease.now) return Promise.resolve('ended');
      guard.members.get(record.blob)!.set(lease.id, lease.until);
      return Promise.resolve('ok');
    },
    get: (id) => Promise.resolve(resumes.get(id) ?? null),
    storeTicket: (id, ticket) => {
      tickets.set(id, ticket);
      return Promise.resolve();
    },
    takeTicket: (id) => {
      const ticket = tickets.get(id) ?? null;
      tickets.delete(id);
      return Promise.resolve(ticket);
    },
  };
}

export type Job = { [N in JobName]: { name: N; payload: JobPayload<N>; delayMs: number | undefined } }[JobName];

export function recordingQueue(): { enqueue: Enqueue; jobs: Job[] } {
  const jobs: Job[] = [];
  const enqueue: Enqueue = (name, payload, options = {}) => {
    jobs.push({ name, payload, delayMs: options.delayMs } as Job);
    return Promise.resolve();
  };
  return { enqueue, jobs };
}

/** Everything the file use cases need, in memory, with a fast KDF (a hash, not scrypt: the KDF is tested apart). */
export function fakeWorld(env: Record<string, string> = {}) {
  const config: RuntimeConfig = { ...loadConfig({ NODE_ENV: 'test', CINDERBOX_SECRET: FAKE_SECRET, ...env }), secret: FAKE_SECRET };
  const clock = fakeClock();
  const store = memoryStore();
  const guard = memoryGuard();
  const files = memoryFiles(guard);
  const queue = recordingQueue();
  const kdf = createKdf({
    secret: FAKE_SECRET,
    deriveKeys: ({ passphrase }) => {
      const master = createHash('sha512').update(passphrase).digest();
      return Promise.resolve({ lookupId: master.subarray(0, 32).toString('hex'), kek: master.subarray(32) });
    },
  });
  const deps: DownloadsDeps = {
    config,
    kdf,
    pool: null,
    files,
    blobs: { store, guard },
    wordlist: testWordlist(),
    enqueue: queue.enqueue,
    log: createSilentLogger(),
    now: clock.now,
    resumes: memoryResumes(guard, files),
  };
  return { deps, clock, store, guard, files, jobs: queue.jobs };
}
