import { Redis, type RedisOptions } from 'ioredis';
import type { SentinelAddress } from '../config.js';
import { followSentinelSwitches } from './redis-failover.js';

/**
 * Where Redis is: a URL, or Sentinel (SPEC §10.3). `Config` has these fields; a bare URL string
 * also works (tests). Passwords live here and in the ioredis options only, never in a log line.
 */
export interface RedisTarget {
  redisUrl?: string | undefined;
  redisSentinels?: SentinelAddress[] | undefined;
  redisSentinelName?: string | undefined;
  redisSentinelPassword?: string | undefined;
  redisPassword?: string | undefined;
}

/**
 * The one place that turns the configuration into ioredis connection options, for both roles.
 * BullMQ copies them: a Worker's blocking connection is `client.duplicate()`, which is
 * `new Redis({ ...client.options, ...override })` in ioredis 5, so Sentinel options carry over.
 */
export function redisConnectionOptions(target: RedisTarget | string): RedisOptions {
  const t: RedisTarget = typeof target === 'string' ? { redisUrl: target } : target;
  if (t.redisSentinels !== undefined && t.redisSentinels.length > 0) {
    return {
      sentinels: t.redisSentinels.map(({ host, port }) => ({ host, port })),
      name: t.redisSentinelName ?? 'mymaster',
      ...(t.redisSentinelPassword !== undefined ? { sentinelPassword: t.redisSentinelPassword } : {}),
      ...(t.redisPassword !== undefined ? { password: t.redisPassword } : {}),
      role: 'master',
      // Off on purpose. ioredis 5.11's detector disconnects on +switch-master whatever the client is
      // doing; if it is between reconnect attempts then, connect() rejects and the client ends for
      // good (status "end", no more retries): seen in 5 of 6 clients in one failover here.
      // followSentinelSwitches (redis-failover.ts) does that job for ready clients only; a dead
      // host is caught by socketTimeout; READONLY reconnects; every reconnect asks Sentinel again.
      failoverDetector: false,
      // A sentinel that accepts the connection but never answers must not stall the resolution.
      sentinelCommandTimeout: 1_000,
    };
  }
  if (t.redisUrl === undefined) throw new Error('REDIS_URL or REDIS_SENTINELS is required');
  const options = urlOptions(t.redisUrl);
  if (options.password === undefined && t.redisPassword !== undefined) options.password = t.redisPassword;
  return options;
}

/**
 * redis://, rediss://, valkey://, valkeys:// and unix:// URLs, parsed here: ioredis reads only
 * redis(s):// and would take "valkey" or "unix" for a host name.
 */
function urlOptions(raw: string): RedisOptions {
  const url = new URL(raw);
  const scheme = url.protocol.replace(/:$/, '');
  const options: RedisOptions = {};
  if (url.username !== '') options.username = decodeURIComponent(url.username);
  if (url.password !== '') options.password = decodeURIComponent(url.password);
  if (scheme === 'unix') {
    options.path = decodeURIComponent(url.pathname);
    const db = url.searchParams.get('db');
    if (db !== null) options.db = Number(db);
    return options;
  }
  options.host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  options.port = url.port === '' ? 6379 : Number(url.port);
  const db = url.pathname.replace(/^\//, '');
  if (db !== '') options.db = Number(db);
  if (scheme === 'rediss' || scheme === 'valkeys') options.tls = {};
  return options;
}

/**
 * Redis clients by role (SPEC §5). The API's client fails fast: no offline queue and a command
 * timeout, so an outage answers 503 within about a second instead of hanging a request. The
 * worker's client waits and reconnects forever, as BullMQ requires (`maxRetriesPerRequest: null`).
 * Both ask Sentinel again on every reconnect, so after a failover they find the new primary.
 */
const API_COMMAND_TIMEOUT_MS = 1_000;

/** A client that also moves off a replaced primary at once (redis-failover.ts). */
function following(target: RedisTarget | string, options: RedisOptions): Redis {
  const client = new Redis(options);
  if (typeof target !== 'string') followSentinelSwitches(client, target);
  return client;
}

// A primary demoted to replica answers writes with READONLY: drop the connection so the next one
// asks Sentinel (and the ready check's role test) again. The command itself fails (1, not 2):
// the API answers 503, BullMQ retries its loop, and nothing is resent blindly to a replica.
// (The API's client also resends nothing after any reconnect: autoResendUnfulfilledCommands below.)
const reconnectOnReadOnly = (error: Error) => (error.message.startsWith('READONLY') ? 1 : false);

export function createApiRedis(target: RedisTarget | string, overrides: RedisOptions = {}): Redis {
  return following(target, {
    ...redisConnectionOptions(target),
    enableOfflineQueue: false,
    commandTimeout: API_COMMAND_TIMEOUT_MS,
    // A primary whose host vanished sends no RST: with no reply for 2 s, drop the socket and ask
    // Sentinel again, instead of timing out every command until TCP gives up (minutes).
    socketTimeout: 2_000,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 1,
    // A command still waiting for its reply when a ready connection drops (socketTimeout, a move to
    // a new primary, READONLY) has already failed to its caller ("Command timed out": a 503), yet it
    // may have run. ioredis would send it again on the next connection, and a script that counts (a
    // download's claim, a failed lookup, a rate-limit hit, a lookup slot) would count twice for one
    // request that was told it failed. So nothing is resent: the caller's error is the only outcome
    // (ioredis drops such a command without settling it; its commandTimeout still rejects it).
    // (BullMQ's Queue shares this client; its adds carry a job id, so a retry by the caller is safe.)
    autoResendUnfulfilledCommands: false,
    // Reconnect quickly after an outage, so the service recovers without a restart.
    retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    sentinelRetryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    reconnectOnError: reconnectOnReadOnly,
    lazyConnect: false,
    ...overrides,
  });
}

export function createWorkerRedis(target: RedisTarget | string, overrides: RedisOptions = {}): Redis {
  return following(target, {
    ...redisConnectionOptions(target),
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    // Above BullMQ's longest blocking wait (10 s, plus its own 1 s watchdog): a BZPOPMIN on the
    // blocking connection (a duplicate of this client, with these options) is never cut short.
    socketTimeout: 15_000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    sentinelRetryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    reconnectOnError: reconnectOnReadOnly,
    ...overrides,
  });
}

/**
 * How long an upload waits for a replica to confirm its record. Below API_COMMAND_TIMEOUT_MS, so a
 * stuck replica ends the WAIT itself (and the upload answers 503) before the client times out.
 */
export const REPLICATION_WAIT_MS = 500;

/** How long "the primary has no replica" (or "has N") is believed before INFO is asked again. */
export const REPLICA_COUNT_TTL_MS = 3_000;

/** A replica is attached but none confirmed the write in time: the upload is not acknowledged. */
export class ReplicationUnconfirmedError extends Error {
  constructor(
    readonly attached: number,
    timeoutMs: number,
  ) {
    super(`no replica confirmed the write within ${timeoutMs} ms (${attached} attached)`);
    this.name = 'ReplicationUnconfirmedError';
  }
}

const replicaCounts = new WeakMap<Redis, { replicas: number; at: number }>();

/**
 * Replicas that can confirm a write: online and already acknowledging the stream. One still in its
 * initial sync (or just after it: Redis 7 holds the stream back until the replica's first ACK,
 * up to a second later) holds none of our data yet and cannot answer WAIT: it does not count.
 */
export function confirmingReplicas(infoReplication: string): number {
  let count = 0;
  for (const [, fields] of infoReplication.matchAll(/^slave\d+:(.*)$/gm)) {
    const entry = new Map((fields ?? '').split(',').map((kv) => kv.split('=') as [string, string]));
    if (entry.get('state') === 'online' && Number(entry.get('offset')) > 0) count += 1;
  }
  return count;
}

async function connectedReplicas(redis: Redis): Promise<number> {
  return confirmingReplicas(await redis.info('replication'));
}

/**
 * Waits until at least one replica holds every write this connection made so far (WAIT 1), so a
 * failover cannot lose what is acknowledged next. With no replica attached there is nothing to
 * wait for (WAIT would only sleep for its timeout): that answer is cached for a few seconds.
 * Throws ReplicationUnconfirmedError (a 503) when replicas are attached and none confirmed.
 * Must run on the connection that wrote: WAIT covers that client's own writes.
 */
export async function confirmReplicated(
  redis: Redis,
  options: { timeoutMs: number; now?: () => number },
): Promise<{ confirmedBy: number }> {
  const now = options.now ?? Date.now;
  let known = replicaCounts.get(redis);
  if (known === undefined || now() - known.at > REPLICA_COUNT_TTL_MS) {
    known = { replicas: await connectedReplicas(redis), at: now() };
    replicaCounts.set(redis, known);
  }
  if (known.replicas === 0) return { confirmedBy: 0 };
  const confirmedBy = await redis.wait(1, options.timeoutMs);
  if (confirmedBy >= 1) return { confirmedBy };
  // Nobody confirmed: the replicas may have left meanwhile (then there is none to wait for), or
  // one is attached but stuck or lagging.
  const replicas = await connectedReplicas(redis);
  replicaCounts.set(redis, { replicas, at: now() });
  if (replicas === 0) return { confirmedBy: 0 };
  throw new ReplicationUnconfirmedError(replicas, options.timeoutMs);
}

const UNAVAILABLE_MESSAGES = [
  "Stream isn't writeable",
  'Command timed out',
  'Connection is closed',
  'Reached the max retries per request limit',
  'connect ECONNREFUSED',
  'connect ENOENT',
  'read ECONNRESET',
  'LOADING',
  'MISCONF',
  // During a Sentinel failover: a demoted primary, a replica cut off from its primary, no sentinel.
  'READONLY',
  'MASTERDOWN',
  'Command aborted due to connection close',
  'All sentinels are unreachable',
  'Socket timeout',
  // min-replicas-to-write on the primary (optional hardening, docs/OPERATIONS.md).
  'NOREPLICAS',
  // A primary demoted while a WAIT (an upload's replication check) was blocked on it.
  'UNBLOCKED',
];

/** True for errors that mean "Redis cannot answer now", as opposed to a bug in a command. */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === 'MaxRetriesPerRequestError' || error instanceof ReplicationUnconfirmedError) return true;
  return UNAVAILABLE_MESSAGES.some((m) => error.message.includes(m));
}

/** True when Redis refused a write because it is out of memory (maxmemory with noeviction). */
export function isRedisOutOfMemory(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('OOM');
}

/** Reads `maxmemory-policy`; null when CONFIG is not allowed (managed Redis). */
export async function readEvictionPolicy(redis: Redis): Promise<string | null> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as unknown;
    if (Array.isArray(reply) && typeof reply[1] === 'string') return reply[1];
    return null;
  } catch {
    return null;
  }
}
