import type { Redis } from 'ioredis';
import { PROTECT_LUA } from '../blobs/blobs.repository.js';
import { luaScripts } from '../shared/lua.js';
import type { RedisKeys } from '../shared/redis-keys.js';

const lua = luaScripts(import.meta.url);

/**
 * What finishing one started download needs (docs/FORMAT.md, "Resume records"), opaque without its
 * capability: the data key wrapped under a KEK only the capability derives, and a copy of the sealed
 * metadata. It outlives the file record (a burn deletes that at once) for RESUME_WINDOW_SECONDS.
 */
export interface ResumeRecord {
  blob: string;
  /** The data key wrapped under the resume KEK, base64. */
  wk: string;
  /** The file's sealed metadata, base64 (the same bytes as its record's). */
  meta: string;
  size: number;
  /** The file's lookup id: a resume on a key route must name the same file, and a deleted one is refused. */
  lookup: string;
  /** Which download of the file (1-based) this record finishes, for the sender's receipt. */
  n: number;
  /**
   * How that download was asked for: by passphrase (`key`) or by a ticket. Only a ticket's download
   * resumes on the ticket's address, which asks for no passphrase; a passphrase download resumes
   * only where its passphrase is given again.
   */
  via: 'key' | 'ticket';
}

/** The recipient page's download ticket: the passphrase's KEK wrapped for one GET. */
export interface TicketRecord {
  lookup: string;
  /** The KEK wrapped under the ticket's key, base64. */
  wk: string;
}

/** Whether a resumed download got its lease: refused once the sender deleted the file or the window is over. */
export type ResumeLease = 'ok' | 'deleted' | 'ended';

type Scripted = Redis & {
  cbxResumeStore(...args: (string | number)[]): Promise<number>;
  cbxResumeLease(...args: (string | number)[]): Promise<ResumeLease>;
  cbxTakeTicket(key: string): Promise<string[]>;
};

const TAKE_TICKET = `local t = redis.call('HGETALL', KEYS[1]) redis.call('DEL', KEYS[1]) return t`;

function fromFlat(flat: string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(flat[i]!, flat[i + 1]!);
  return map;
}

export function createResumeRepository(redis: Redis, keys: RedisKeys) {
  if (!('cbxResumeStore' in redis)) {
    redis.defineCommand('cbxResumeStore', { numberOfKeys: 4, lua: `${PROTECT_LUA}\n${lua('resume-store')}` });
    redis.defineCommand('cbxResumeLease', { numberOfKeys: 3, lua: `${PROTECT_LUA}\n${lua('resume-lease')}` });
    redis.defineCommand('cbxTakeTicket', { numberOfKeys: 1, lua: TAKE_TICKET });
  }
  const s = redis as Scripted;
  return {
    /**
     * Stores the record until `until` (ms) and keeps its blob from the janitor as long; false (nothing
     * written) once the sender has deleted the file, or an `admin purge` began since the download's
     * claim (`claimEpoch`, from claim.lua).
     */
    async store(resumeId: string, record: ResumeRecord, until: number, claimEpoch: string): Promise<boolean> {
      const stored = await s.cbxResumeStore(
        keys.resume(resumeId),
        keys.tombstone(record.lookup),
        keys.purgeEpoch(),
        keys.purgeRunning(),
        keys.blob(''),
        record.blob,
        until,
        claimEpoch,
        'blob',
        record.blob,
        'wk',
        record.wk,
        'meta',
        record.meta,
        'size',
        record.size,
        'lookup',
        record.lookup,
        'n',
        record.n,
        'via',
        record.via,
      );
      return stored === 1;
    },

    /** Removes a record whose capability never reached its client: its wrapped copy of the data key goes at once. */
    async remove(resumeId: string): Promise<void> {
      await redis.del(keys.resume(resumeId));
    },

    /**
     * Leases the record's blob for a resumed download until `until` (ms), in the same step as the check
     * that its window still keeps the blob (the janitor destroys a blob nothing protects, and a resume
     * needs no live record).
     */
    async lease(
      resumeId: string,
      record: Pick<ResumeRecord, 'blob' | 'lookup'>,
      lease: { id: string; until: number; now: number },
    ): Promise<ResumeLease> {
      return s.cbxResumeLease(
        keys.resume(resumeId),
        keys.tombstone(record.lookup),
        keys.blob(record.blob),
        lease.id,
        lease.until,
        lease.now,
      );
    },

    async get(resumeId: string): Promise<ResumeRecord | null> {
      const found = await redis.hgetall(keys.resume(resumeId));
      if (found.blob === undefined) return null;
      return {
        blob: found.blob,
        wk: found.wk ?? '',
        meta: found.meta ?? '',
        size: Number(found.size),
        lookup: found.lookup ?? '',
        n: Number(found.n),
        // A record without the field (written before it existed) is a passphrase download's.
        via: found.via === 'ticket' ? 'ticket' : 'key',
      };
    },

    async storeTicket(ticketId: string, ticket: TicketRecord, ttlMs: number): Promise<void> {
      await redis
        .multi()
        .hset(keys.ticket(ticketId), 'lookup', ticket.lookup, 'wk', ticket.wk)
        .pexpire(keys.ticket(ticketId), ttlMs)
        .exec();
    },

    /** The ticket, removed as it is read: it serves one GET. */
    async takeTicket(ticketId: string): Promise<TicketRecord | null> {
      const map = fromFlat(await s.cbxTakeTicket(keys.ticket(ticketId)));
      if (!map.has('lookup')) return null;
      return { lookup: map.get('lookup')!, wk: map.get('wk')! };
    },
  };
}

export type ResumeRepository = ReturnType<typeof createResumeRepository>;
