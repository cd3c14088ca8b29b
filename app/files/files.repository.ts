import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
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
}

export type GoneReason = 'burned' | 'expired' | 'deleted';
export type Lookup<T> = { kind: 'found'; record: FileRecord; extra: T } | { kind: 'gone'; reason: GoneReason } | { kind: 'missing' };

const here = path.dirname(fileURLToPath(import.meta.url));
// The Lua files live beside this module; a build in dist/ reads them from the sources.
const luaDir = [path.join(here, 'lua'), path.join(here, '..', '..', '..', 'app', 'files', 'lua')].find((d) => existsSync(d));
if (!luaDir) throw new Error('files: Lua scripts not found');
const lua = (name: string) => readFileSync(path.join(luaDir, `${name}.lua`), 'utf8');
// The scripts that look a file up share `is_live` and `not_live` from lookup.lua.
const lookupLua = (name: string) => `${lua('lookup')}\n${lua(name)}`;

const SCRIPTS = {
  cbxStore: { numberOfKeys: 3, lua: lua('store') },
  cbxClaim: { numberOfKeys: 2, lua: lookupLua('claim') },
  cbxRefund: { numberOfKeys: 3, lua: lua('refund') },
  cbxPeek: { numberOfKeys: 2, lua: lookupLua('peek') },
  cbxPreview: { numberOfKeys: 2, lua: lookupLua('preview') },
  cbxDelete: { numberOfKeys: 2, lua: lookupLua('delete') },
};

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
    'blob', record.blob, 'wk', record.wk, 'meta', record.meta, 'uses', String(record.uses), 'total', String(record.totalUses),
    'size', String(record.size), 'created', String(record.created), 'expires', String(record.expires), 'dt', record.dt,
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

/** Redis I/O for file records; each multi-step change is one Lua script (atomic under concurrency). */
export function createFilesRepository(redis: Redis, keys: RedisKeys, tombstoneMs: number) {
  const s = scripted(redis);
  const fileKeys = (lookupId: string, blob: string) => [keys.file(lookupId), keys.tombstone(lookupId), keys.blob(blob)];
  return {
    /** False when the lookup id is taken (the caller draws a new passphrase). */
    async store(lookupId: string, record: FileRecord): Promise<boolean> {
      const reply = await s.cbxStore(...fileKeys(lookupId, record.blob), record.expires, record.expires + tombstoneMs, ...toFields(record));
      return reply === 1;
    },

    /** Takes one use; `burned` is true for the request that took the last one. */
    async claim(lookupId: string, now: number): Promise<Lookup<{ burned: boolean }>> {
      const reply = await s.cbxClaim(keys.file(lookupId), keys.tombstone(lookupId), now);
      const lookup = interpret(reply, (status) => (status === 'ok' ? { burned: false } : status === 'burned' ? { burned: true } : undefined));
      // The blob id is known only from the record: drop its liveness key now. If this step is lost,
      // the key expires with the record and the janitor's shred job does not depend on it.
      if (lookup.kind === 'found' && lookup.extra.burned) await redis.del(keys.blob(lookup.record.blob));
      return lookup;
    },

    /** Gives a use back (the server failed before the first byte); restores a burned record. */
    async refund(lookupId: string, claimed: FileRecord): Promise<void> {
      await s.cbxRefund(...fileKeys(lookupId, claimed.blob), claimed.expires, ...toFields(claimed));
    },

    async peek(lookupId: string, now: number): Promise<Lookup<null>> {
      return interpret(await s.cbxPeek(keys.file(lookupId), keys.tombstone(lookupId), now), (status) => (status === 'ok' ? null : undefined));
    },

    async preview(lookupId: string, now: number): Promise<Lookup<null> | { kind: 'used' }> {
      const reply = (await s.cbxPreview(keys.file(lookupId), keys.tombstone(lookupId), now)) as [string];
      if (reply[0] === 'used') return { kind: 'used' };
      return interpret(reply, (status) => (status === 'ok' ? null : undefined));
    },

    async remove(lookupId: string, tokenHash: string, now: number): Promise<{ kind: 'deleted'; blob: string } | { kind: 'forbidden' } | { kind: 'gone'; reason: GoneReason } | { kind: 'missing' }> {
      const reply = (await s.cbxDelete(keys.file(lookupId), keys.tombstone(lookupId), tokenHash, now)) as [string, string?];
      if (reply[0] === 'deleted') {
        await redis.del(keys.blob(reply[1]!));
        return { kind: 'deleted', blob: reply[1]! };
      }
      if (reply[0] === 'forbidden') return { kind: 'forbidden' };
      if (reply[0] === 'gone') return { kind: 'gone', reason: reply[1] as GoneReason };
      return { kind: 'missing' };
    },

    /** True when some live record already uses this lookup id or its tombstone. */
    async taken(lookupId: string): Promise<boolean> {
      return (await redis.exists(keys.file(lookupId), keys.tombstone(lookupId))) > 0;
    },
  };
}

export type FilesRepository = ReturnType<typeof createFilesRepository>;
