import { Redis } from 'ioredis';
import type { Logger } from '../app/shared/logger.js';
import type { RedisTarget } from '../app/shared/redis.js';

/**
 * Wrapped data keys must never reach a disk (SPEC §4.5, §10.3). Cinderbox cannot enforce how the
 * operator runs Redis, so the worker looks: once at start and again whenever the primary it is
 * connected to changes (a failover, or a restart), it reads the persistence settings of the primary
 * and of every replica Sentinel lists, and warns about each node that would write keys to disk.
 * Managed services often refuse CONFIG; then it says it could not check.
 */

type NodeRole = 'primary' | 'replica';

const SETTINGS = ['save', 'appendonly', 'repl-diskless-sync', 'repl-diskless-load'] as const;
type Settings = Partial<Record<(typeof SETTINGS)[number], string>>;

/** The settings of one node that put data on its disk, as `name value` strings; empty when none. */
export function diskWrites(role: NodeRole, settings: Settings): string[] {
  const found: string[] = [];
  if (settings.save !== undefined && settings.save.trim() !== '') found.push(`save "${settings.save}"`);
  if (settings.appendonly === 'yes') found.push('appendonly yes');
  // A primary with disk-based sync writes an RDB file for every replica that (re)syncs; a replica
  // with disk-based load stores the primary's RDB before reading it.
  if (role === 'primary' && settings['repl-diskless-sync'] === 'no') found.push('repl-diskless-sync no');
  if (role === 'replica' && settings['repl-diskless-load'] === 'disabled') found.push('repl-diskless-load disabled');
  return found;
}

async function readSettings(redis: Redis): Promise<Settings> {
  const settings: Settings = {};
  // One name per CONFIG GET: Redis before 7 takes a single pattern.
  for (const name of SETTINGS) {
    const reply = (await redis.config('GET', name)) as unknown;
    if (Array.isArray(reply) && typeof reply[1] === 'string') settings[name] = reply[1];
  }
  return settings;
}

interface NodeAddress {
  host: string;
  port: number;
}

const SHORT_LIVED = {
  lazyConnect: true,
  connectTimeout: 1_000,
  commandTimeout: 1_000,
  maxRetriesPerRequest: 0,
  retryStrategy: () => null,
  enableReadyCheck: false,
} as const;

async function withClient<T>(address: NodeAddress, password: string | undefined, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ ...address, ...SHORT_LIVED, ...(password !== undefined ? { password } : {}) });
  client.on('error', () => undefined); // the caller reports the failure of `use`
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

function parseSentinelTable(reply: unknown): Record<string, string>[] {
  if (!Array.isArray(reply)) return [];
  return reply.map((flat: unknown) => {
    const entry: Record<string, string> = {};
    if (Array.isArray(flat)) for (let i = 0; i + 1 < flat.length; i += 2) entry[String(flat[i])] = String(flat[i + 1]);
    return entry;
  });
}

/** The replicas of the primary that some sentinel knows and considers up; null when no sentinel answered. */
async function sentinelReplicas(target: RedisTarget): Promise<NodeAddress[] | null> {
  for (const sentinel of target.redisSentinels ?? []) {
    try {
      const reply = await withClient(sentinel, target.redisSentinelPassword, (c) =>
        c.call('SENTINEL', 'REPLICAS', target.redisSentinelName ?? 'mymaster'),
      );
      return parseSentinelTable(reply)
        .filter((r) => r.ip !== undefined && r.port !== undefined && !/(s_down|o_down|disconnected)/.test(r.flags ?? ''))
        .map((r) => ({ host: r.ip!, port: Number(r.port) }));
    } catch {
      // this sentinel is down or refuses us: ask the next one
    }
  }
  return null;
}

function describePeer(redis: Redis): string {
  const stream = redis.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  if (stream?.remoteAddress !== undefined) return `${stream.remoteAddress}:${stream.remotePort ?? ''}`;
  return redis.options.path ?? `${redis.options.host ?? ''}:${redis.options.port ?? ''}`;
}

const reasonOf = (error: unknown) => (error instanceof Error ? error.message.split('\n')[0]! : String(error));

/**
 * Checks now if the worker's client is ready, and again on every reconnect that lands on a
 * different primary (its run_id changes after a failover or a restart). Returns the checker, so
 * a test can await one pass.
 */
export function watchRedisPersistence(deps: { redis: Redis; target: RedisTarget; log: Logger }) {
  const { redis, target, log } = deps;
  let checkedPrimary: string | null = null;

  const inspect = (node: string, role: NodeRole, settings: Settings) => {
    const writes = diskWrites(role, settings);
    if (writes.length > 0) log.warn('redis_persistence_on', { node, role, settings: writes });
    return writes.length;
  };

  const check = async (): Promise<void> => {
    const primary = describePeer(redis);
    // The address too: a managed service may hide run_id.
    const identity = `${/^run_id:(\w+)/m.exec(await redis.info('server'))?.[1] ?? 'unknown'}@${primary}`;
    if (identity === checkedPrimary) return;
    checkedPrimary = identity;
    let nodes = 0;
    let warnings = 0;
    try {
      warnings += inspect(primary, 'primary', await readSettings(redis));
      nodes += 1;
    } catch (error) {
      // Refused (managed service): said once. Connection lost: the next 'ready' tries again.
      if (redis.status !== 'ready') checkedPrimary = null;
      log.info('redis_persistence_unchecked', { node: primary, role: 'primary', reason: reasonOf(error) });
    }
    if (target.redisSentinels !== undefined) {
      const replicas = await sentinelReplicas(target);
      if (replicas === null)
        log.info('redis_persistence_unchecked', { node: 'replicas', role: 'replica', reason: 'no sentinel answered SENTINEL REPLICAS' });
      for (const replica of replicas ?? []) {
        const node = `${replica.host}:${replica.port}`;
        try {
          warnings += inspect(node, 'replica', await withClient(replica, target.redisPassword, readSettings));
          nodes += 1;
        } catch (error) {
          log.info('redis_persistence_unchecked', { node, role: 'replica', reason: reasonOf(error) });
        }
      }
    }
    log.info('redis_persistence_checked', { nodes, warnings });
  };

  const onReady = () => {
    check().catch((error: unknown) => {
      // The connection dropped mid-check: the next 'ready' tries again.
      checkedPrimary = null;
      log.info('redis_persistence_unchecked', { node: 'primary', role: 'primary', reason: reasonOf(error) });
    });
  };
  redis.on('ready', onReady);
  if (redis.status === 'ready') onReady();
  return { check, stop: () => void redis.off('ready', onReady) };
}
