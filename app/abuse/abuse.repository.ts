import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { luaScripts } from '../shared/lua.js';
import { LOOKUP_FAILURE_WINDOW_SECONDS, type RedisKeys } from '../shared/redis-keys.js';

const lua = luaScripts(import.meta.url);

/** A client as Redis knows it: keyed hashes of its address (or /64) and of its aggregate (/24, /48). */
export interface CountedClient {
  id: string;
  aggregateId: string;
  /** Whether the aggregate has a failure budget of its own (IPv6 /48: one party can fill it with /64s). */
  countAggregate: boolean;
}

export interface FailureTerms {
  limit: number;
  aggregateLimit: number;
  blockMs: number;
}

/**
 * A reserved slot: the windows (of the client's count and of its aggregate's) it was taken in.
 * Settling touches those windows only, never one that started after they ended.
 */
export interface LookupSlot {
  clientWindow: string;
  /** '' when the aggregate is not counted. */
  aggregateWindow: string;
}

export type Reservation = { kind: 'ok'; slot: LookupSlot } | { kind: 'blocked'; ms: number } | { kind: 'full' };

/** Names a window that this call may start; unique enough that two windows of one key never share one. */
const freshWindowId = () => randomBytes(6).toString('base64url');

type Scripted = Redis & {
  cbxReserve(...args: (string | number)[]): Promise<[string, (number | string)?, string?]>;
  cbxSettle(...args: (string | number)[]): Promise<[number, number]>;
};

/**
 * Brute-force accounting in Redis (SPEC §4.6, §10.4), keyed by hashes, never by an IP.
 * `windowSeconds` is the failure window (LOOKUP_FAILURE_WINDOW_SECONDS; tests shorten it).
 */
export function createAbuseRepository(redis: Redis, keys: RedisKeys, windowSeconds: number = LOOKUP_FAILURE_WINDOW_SECONDS) {
  if (!('cbxReserve' in redis)) {
    redis.defineCommand('cbxReserve', { numberOfKeys: 4, lua: lua('reserve') });
    redis.defineCommand('cbxSettle', { numberOfKeys: 5, lua: lua('settle') });
  }
  const s = redis as Scripted;
  const keysOf = (client: CountedClient) => [
    keys.lookupFailures(client.id),
    keys.block(client.id),
    keys.lookupFailures(client.aggregateId),
    keys.block(client.aggregateId),
  ];
  const aggregateLimit = (client: CountedClient, terms: FailureTerms) => (client.countAggregate ? terms.aggregateLimit : 0);

  return {
    /** Milliseconds the client (or its counted aggregate) stays blocked, 0 when it is not. */
    async blockedFor(client: CountedClient): Promise<number> {
      const [own, aggregate] = await Promise.all([
        redis.pttl(keys.block(client.id)),
        client.countAggregate ? redis.pttl(keys.block(client.aggregateId)) : Promise.resolve(-2),
      ]);
      return Math.max(0, own, aggregate);
    },

    /** Takes a failure slot before any KDF work: refused when blocked, or when failures and lookups in flight fill the budget. */
    async reserve(client: CountedClient, terms: FailureTerms): Promise<Reservation> {
      const [kind, first, second] = await s.cbxReserve(
        ...keysOf(client),
        terms.limit,
        aggregateLimit(client, terms),
        windowSeconds,
        freshWindowId(),
      );
      if (kind === 'blocked') return { kind, ms: Number(first) };
      if (kind === 'full') return { kind };
      return { kind: 'ok', slot: { clientWindow: String(first), aggregateWindow: String(second ?? '') } };
    },

    /**
     * Gives a slot back (`hit`) or counts it as a failure (`miss`); says which blocks this started.
     * A slot whose window has ended gives nothing back (that window's count is gone); its miss still
     * counts, in the client's current window (settle.lua).
     */
    async settle(
      client: CountedClient,
      slot: LookupSlot,
      outcome: 'hit' | 'miss',
      terms: FailureTerms & { now: number },
    ): Promise<{ client: boolean; aggregate: boolean }> {
      const [own, aggregate] = await s.cbxSettle(
        ...keysOf(client),
        keys.blockList(),
        outcome,
        terms.limit,
        aggregateLimit(client, terms),
        terms.blockMs,
        terms.now,
        client.id,
        client.aggregateId,
        windowSeconds,
        slot.clientWindow,
        client.countAggregate ? slot.aggregateWindow : '',
        freshWindowId(),
      );
      return { client: own === 1, aggregate: aggregate === 1 };
    },
  };
}

export type AbuseRepository = ReturnType<typeof createAbuseRepository>;
