import type { Redis } from 'ioredis';
import { PROTECT_LUA, protectionOf, type Protection } from '../blobs/blobs.repository.js';
import { luaScripts } from '../shared/lua.js';
import { confirmReplicated, REPLICATION_WAIT_MS } from '../shared/redis.js';
import type { RedisKeys } from '../shared/redis-keys.js';

/** A file's Redis record (SPEC §5). Every value but the counters is opaque without the passphrase. */
export interface FileRecord {
  blob: string;
  /** Data key wrapped by the passphrase's KEK, base64. */
  wk: string;
  /** Filename, type and SHA-256 sealed with the data key, base64. */
  meta: string;
  uses: number;
  totalUses: number;
  previewed: boolean;
  size: number;
  created: number;
  expires: number;
  /** SHA-256 of the delete token. */
  dt: string;
  /** On a record a claim returned only: which download (1-based) that claim started (claim.lua). */
  download?: number;
  /** On a record a claim returned only: the purge epoch at the claim (refund.lua, resume-store.lua). */
  epoch?: string;
}

export type GoneReason = 'burned' | 'expired' | 'deleted';
/** What a receipt notes at a download's end. */
export type DownloadEvent = 'completed' | 'resumed' | 'resumed_to_end';
export type Lookup<T> = { kind: 'found'; record: FileRecord; extra: T } | { kind: 'gone'; reason: GoneReason } | { kind: 'missing' };

const lua = luaScripts(import.meta.url);
// Every file script starts with the blob protection helpers and the shared lookup prelude.
const fileScript = (name: string) => `${PROTECT_LUA}\n${lua('lookup')}\n${lua(name)}`;

const SCRIPTS = {
  cbxStore: { numberOfKeys: 3, lua: fileScript('store') },
  cbxClaim: { numberOfKeys: 4, lua: fileScript('claim') },
  cbxRefund: { numberOfKeys: 5, lua: fileScript('refund') },
  cbxPeek: { numberOfKeys: 3, lua: fileScript('peek') },
  cbxPreview: { numberOfKeys: 3, lua: fileScript('preview') },
  cbxDelete: { numberOfKeys: 3, lua: fileScript('delete') },
  cbxReceipt: { numberOfKeys: 3, lua: fileScript('receipt') },
  cbxFinish: { numberOfKeys: 3, lua: fileScript('finish') },
};

/** What the sender's receipt holds (times in ms): no IP, no user agent, nothing a recipient sent. */
export interface Receipt {
  state: 'active' | GoneReason;
  usesLeft: number;
  totalUses: number;
  previewedAt: number | null;
  /** One entry per download that started, in order; `completedAt` once every byte was sent. */
  downloads: { startedAt: number; completedAt: number | null }[];
  resumes: number;
  lastResumedAt: number | null;
  /** Downloads asked for after the file was gone (count only). */
  refusedAfterEnd: number;
}

function receiptOf(state: string, usesLeft: unknown, flat: unknown[]): Receipt {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), String(flat[i + 1]));
  const time = (field: string) => (map.has(field) ? Number(map.get(field)) : null);
  const total = Number(map.get('total') ?? 0);
  // Refunds give uses back, never numbers (claim.lua): the numbers given out may pass the total.
  const numbered = Math.max(total, Number(map.get('n') ?? 0));
  const downloads: Receipt['downloads'] = [];
  for (let n = 1; n <= numbered; n += 1) {
    const startedAt = time(`s${n}`);
    if (startedAt !== null) downloads.push({ startedAt, completedAt: time(`c${n}`) });
  }
  return {
    state: state as Receipt['state'],
    usesLeft: Number(usesLeft),
    totalUses: total,
    previewedAt: time('preview'),
    downloads,
    resumes: Number(map.get('resumes') ?? 0),
    lastResumedAt: time('resumed'),
    refusedAfterEnd: Number(map.get('refused') ?? 0),
  };
}

type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;
type Scripted = Record<keyof typeof SCRIPTS, ScriptCall>;

function scripted(redis: Redis): Scripted {
  for (const [name, def] of Object.entries(SCRIPTS)) {
    if (!(name in redis)) redis.defineCommand(name, def);
  }
  return redis as unknown as Scripted;
}

function toFields(record: FileRecord): string[] {
  return [
    'blob',
    record.blob,
    'wk',
    record.wk,
    'meta',
    record.meta,
    'uses',
    String(record.uses),
    'total',
    String(record.totalUses),
    'size',
    String(record.size),
    'created',
    String(record.created),
    'expires',
    String(record.expires),
    'dt',
    record.dt,
    ...(record.previewed ? ['previewed', '1'] : []),
  ];
}

function fromFields(flat: unknown[]): FileRecord {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), String(flat[i + 1]));
  const get = (k: string) => map.get(k) ?? '';
  return {
    blob: get('blob'),
    wk: get('wk'),
    meta: get('meta'),
    uses: Number(get('uses')),
    totalUses: Number(get('total')),
    previewed: map.get('previewed') === '1',
    size: Number(get('size')),
    created: Number(get('created')),
    expires: Number(get('expires')),
    dt: get('dt'),
    ...(map.has('download') ? { download: Number(map.get('download')) } : {}),
    ...(map.has('epoch') ? { epoch: map.get('epoch')! } : {}),
  };
}

function interpret<T>(reply: unknown, found: (status: string) => T | undefined): Lookup<T> {
  const [status, ...rest] = reply as [string, ...unknown[]];
  if (status === 'missing') return { kind: 'missing' };
  if (status === 'gone') return { kind: 'gone', reason: rest[0] as GoneReason };
  const extra = found(status);
  if (extra === undefined) throw new Error(`unexpected script reply ${status}`);
  return { kind: 'found', record: fromFields(rest), extra };
}

/**
 * Redis I/O for file records; each multi-step change is one Lua script (atomic under concurrency).
 * The scripts also keep the blob's protection (blobs.repository.ts) in step with the record, so a
 * record and what guards its bytes can never disagree.
 */
export function createFilesRepository(redis: Redis, keys: RedisKeys, tombstoneMs: number) {
  const s = scripted(redis);
  const blobPrefix = keys.blob('');
  const fileKeys = (lookupId: string) => [keys.file(lookupId), keys.tombstone(lookupId), keys.receipt(lookupId)];
  return {
    /**
     * Waits until a replica has every write so far (WAIT), when replicas are attached: an upload is
     * acknowledged only once a failover cannot lose it (SPEC §10.3); 503 when none confirms in time.
     */
    async confirmReplicated(): Promise<void> {
      await confirmReplicated(redis, { timeoutMs: REPLICATION_WAIT_MS });
    },

    /**
     * False when the lookup id is taken (the caller draws a new passphrase). With `uploadLease`, the
     * record's protection takes over from that lease in the same step: the upload's lease ends.
     */
    async store(lookupId: string, record: FileRecord, uploadLease?: string): Promise<boolean> {
      const reply = await s.cbxStore(
        ...fileKeys(lookupId),
        blobPrefix,
        record.blob,
        record.expires,
        record.expires + tombstoneMs,
        uploadLease ?? '',
        ...toFields(record),
      );
      return reply === 1;
    },

    /**
     * Takes one use and leases the blob for this download until `leaseUntil`, atomically; `burned`
     * is true for the request that took the last one.
     */
    async claim(lookupId: string, options: { now: number; leaseId: string; leaseUntil: number }): Promise<Lookup<{ burned: boolean }>> {
      const reply = await s.cbxClaim(
        ...fileKeys(lookupId),
        keys.purgeEpoch(),
        blobPrefix,
        options.now,
        options.leaseId,
        options.leaseUntil,
      );
      return interpret(reply, (status) => (status === 'ok' ? { burned: false } : status === 'burned' ? { burned: true } : undefined));
    },

    /**
     * Gives back exactly the use one claim took (the server failed before the first byte): the
     * record as that claim saw it, and whether that claim burned it. False when the file has gone
     * by other means since and stays gone.
     */
    async refund(lookupId: string, claimed: { record: FileRecord; burned: boolean; now: number }): Promise<boolean> {
      const { record } = claimed;
      const reply = await s.cbxRefund(
        ...fileKeys(lookupId),
        keys.purgeEpoch(),
        keys.purgeRunning(),
        blobPrefix,
        claimed.now,
        claimed.burned ? '1' : '0',
        record.blob,
        record.expires,
        downloadNumber(record),
        record.epoch ?? '0',
        ...toFields(record),
      );
      return reply === 1;
    },

    /** The sender's receipt, if `tokenHash` is its delete token's: `forbidden` otherwise, `missing` once it is gone. */
    async receipt(
      lookupId: string,
      tokenHash: string,
      now: number,
    ): Promise<{ kind: 'found'; receipt: Receipt } | { kind: 'forbidden' } | { kind: 'missing' }> {
      const [status, state, usesLeft, ...rest] = (await s.cbxReceipt(...fileKeys(lookupId), blobPrefix, now, tokenHash)) as [
        string,
        string,
        unknown,
        ...unknown[],
      ];
      if (status === 'forbidden') return { kind: 'forbidden' };
      if (status !== 'ok') return { kind: 'missing' };
      return { kind: 'found', receipt: receiptOf(state, usesLeft, rest) };
    },

    /**
     * A download's end in one step: notes on the receipt that download `n` sent its last byte, or
     * was resumed (to its end or not), when `event` says so, and ends its lease on the blob; answers
     * what still protects the blob.
     */
    async finish(
      lookupId: string,
      end: { n: number; event: DownloadEvent | null; now: number; blobId: string; leaseId: string },
    ): Promise<Protection> {
      const flat = await s.cbxFinish(...fileKeys(lookupId), blobPrefix, end.now, end.n, end.event ?? '', end.blobId, end.leaseId);
      return protectionOf(flat as string[]);
    },

    async peek(lookupId: string, now: number): Promise<Lookup<null>> {
      return interpret(await s.cbxPeek(...fileKeys(lookupId), blobPrefix, now), (status) => (status === 'ok' ? null : undefined));
    },

    async preview(lookupId: string, now: number): Promise<Lookup<null> | { kind: 'used' }> {
      const reply = (await s.cbxPreview(...fileKeys(lookupId), blobPrefix, now)) as [string];
      if (reply[0] === 'used') return { kind: 'used' };
      return interpret(reply, (status) => (status === 'ok' ? null : undefined));
    },

    async remove(
      lookupId: string,
      tokenHash: string,
      now: number,
    ): Promise<{ kind: 'deleted'; blob: string } | { kind: 'forbidden' } | { kind: 'gone'; reason: GoneReason } | { kind: 'missing' }> {
      const reply = (await s.cbxDelete(...fileKeys(lookupId), blobPrefix, tokenHash, now)) as [string, string?];
      if (reply[0] === 'deleted') return { kind: 'deleted', blob: reply[1]! };
      if (reply[0] === 'forbidden') return { kind: 'forbidden' };
      if (reply[0] === 'gone') return { kind: 'gone', reason: reply[1] as GoneReason };
      return { kind: 'missing' };
    },
  };
}

export type FilesRepository = ReturnType<typeof createFilesRepository>;

/**
 * Which download (1-based) a claim was: the number claim.lua gave it. A record without one (not a
 * claim's answer) is numbered by the uses it left, as claims were before they carried a number.
 */
export function downloadNumber(claimed: Pick<FileRecord, 'totalUses' | 'uses' | 'download'>): number {
  return claimed.download ?? claimed.totalUses - claimed.uses;
}
