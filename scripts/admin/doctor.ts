import type { BlobStore } from '../../app/blobs/blob-store.js';
import { storeFromConfig } from '../../app/blobs/store-from-config.js';
import { ConfigError, loadConfig, type Config } from '../../app/config.js';
import { redisInfoFields } from '../../app/metrics/metrics.models.js';
import { QUEUE_STATES } from '../../app/metrics/registry.js';
import { createSilentLogger, errorForLog } from '../../app/shared/logger.js';
import { readEvictionPolicy } from '../../app/shared/redis.js';
import { HEARTBEAT_TTL_SECONDS } from '../../app/shared/redis-keys.js';
import { diskWrites } from '../../workers/redis-persistence.js';
import { EXIT } from './cli.js';
import { connect, REDIS_WAIT_MS, type AdminContext } from './context.js';
import { columns, formatBytes, formatDuration } from './format.js';
import { heartbeatAge, type Report } from './inventory.js';

type CheckStatus = 'ok' | 'warn' | 'fail' | 'skipped';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
}

/** A clock this far from Redis's eats into a download lease's 15 s margin (docs/JANITOR.md, Clocks). */
const MAX_CLOCK_SKEW_MS = 1_000;
/** Redis memory used, as a share of maxmemory, beyond which uploads are about to be refused. */
const MEMORY_WARN_RATIO = 0.75;
const MEMORY_FAIL_RATIO = 0.9;

const check = (name: string, status: CheckStatus, detail: string): Check => ({ name, status, detail });

/**
 * Judges the primary's persistence settings (CONFIG GET; null when refused) by the worker's own
 * rule (workers/redis-persistence.ts): any of them puts wrapped data keys on a disk (SPEC §4.5).
 * The worker also checks every replica Sentinel knows, and logs `redis_persistence_on`.
 */
export function judgePersistence(settings: Record<(typeof PERSISTENCE_SETTINGS)[number], string | null>): Check {
  const known = Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== null)) as Parameters<typeof diskWrites>[1];
  if (Object.keys(known).length === 0)
    return check('persistence', 'warn', 'CONFIG GET is refused here (managed Redis?): make sure RDB snapshots and AOF are off');
  const writes = diskWrites('primary', known);
  return writes.length === 0
    ? check('persistence', 'ok', 'no RDB snapshots, no AOF, diskless sync: wrapped keys never reach a disk')
    : check('persistence', 'fail', `${writes.join(', ')}: Redis writes the wrapped data keys to disk (docs/OPERATIONS.md)`);
}

const PERSISTENCE_SETTINGS = ['save', 'appendonly', 'repl-diskless-sync', 'repl-diskless-load'] as const;

export function judgeMemory(used: number, max: number): Check {
  if (max === 0)
    return check(
      'memory',
      'warn',
      `${formatBytes(used)} used, no maxmemory: Redis grows until the host runs out (set maxmemory, with noeviction)`,
    );
  const ratio = used / max;
  const detail = `${formatBytes(used)} of ${formatBytes(max)} (${Math.round(ratio * 100)} %)`;
  if (ratio >= MEMORY_FAIL_RATIO) return check('memory', 'fail', `${detail}: uploads are about to be refused`);
  return check('memory', ratio >= MEMORY_WARN_RATIO ? 'warn' : 'ok', detail);
}

export function judgeClock(skewMs: number, uncertaintyMs: number): Check {
  const ms = Math.round(skewMs) || 0; // never "-0"
  const detail = `${ms >= 0 ? '+' : ''}${ms} ms against Redis TIME (±${Math.ceil(uncertaintyMs)} ms)`;
  return Math.abs(skewMs) - uncertaintyMs > MAX_CLOCK_SKEW_MS
    ? check('clock', 'fail', `${detail}: keep this host in sync (NTP); leases and expiries compare clocks`)
    : check('clock', 'ok', detail);
}

async function configValue(ctx: AdminContext, name: string): Promise<string | null> {
  try {
    const reply = (await ctx.redis.config('GET', name)) as unknown;
    return Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : null;
  } catch {
    return null;
  }
}

async function redisChecks(ctx: AdminContext): Promise<Check[]> {
  const checks: Check[] = [];
  const started = performance.now();
  await ctx.redis.ping();
  const rtt = performance.now() - started;
  const server = redisInfoFields(await ctx.redis.info('server'));
  const version = server.valkey_version !== undefined ? `valkey ${server.valkey_version}` : `redis ${server.redis_version ?? '?'}`;
  checks.push(check('redis', 'ok', `reachable, ${version}, ${rtt.toFixed(1)} ms`));

  const policy = await readEvictionPolicy(ctx.redis);
  if (policy === null) checks.push(check('eviction', 'warn', 'CONFIG GET is refused here: make sure maxmemory-policy is noeviction'));
  else if (policy === 'noeviction') checks.push(check('eviction', 'ok', 'maxmemory-policy noeviction'));
  else checks.push(check('eviction', 'fail', `maxmemory-policy ${policy}: Redis may evict file records and janitor jobs; set noeviction`));

  const persistence = Object.fromEntries(
    await Promise.all(PERSISTENCE_SETTINGS.map(async (name) => [name, await configValue(ctx, name)] as const)),
  );
  checks.push(judgePersistence(persistence as Parameters<typeof judgePersistence>[0]));
  const memory = redisInfoFields(await ctx.redis.info('memory'));
  checks.push(judgeMemory(Number(memory.used_memory) || 0, Number(memory.maxmemory) || 0));

  const age = await heartbeatAge(ctx);
  checks.push(
    age === null
      ? check('worker', 'fail', `no heartbeat within ${HEARTBEAT_TTL_SECONDS} s: no janitor is running (expiry and shredding wait)`)
      : check('worker', 'ok', `heartbeat ${formatDuration(age)} ago`),
  );

  const before = Date.now();
  const [seconds, micros] = await ctx.redis.time();
  const after = Date.now();
  checks.push(judgeClock((before + after) / 2 - (Number(seconds) * 1000 + Number(micros) / 1000), (after - before) / 2));

  const jobs = await ctx.janitor.queue.getJobCounts(...QUEUE_STATES);
  const failed = jobs.failed ?? 0;
  checks.push(
    failed > 0
      ? check(
          'queue',
          'warn',
          `${failed} failed job${failed === 1 ? '' : 's'} kept (see job_failed in the worker log); waiting ${jobs.waiting ?? 0}, delayed ${jobs.delayed ?? 0}`,
        )
      : check('queue', 'ok', `waiting ${jobs.waiting ?? 0}, delayed ${jobs.delayed ?? 0}, active ${jobs.active ?? 0}`),
  );
  return checks;
}

/** The storage engine as the service builds it (an s3 bucket gets its probe write and delete), then its own check. */
async function storageCheck(config: Config): Promise<Check> {
  let store: BlobStore | null = null;
  try {
    // The engines never read the secret; RuntimeConfig only guarantees one.
    store = await storeFromConfig({ ...config, secret: config.secret ?? '' }, createSilentLogger());
    await store.check();
    const free = await store.freeBytes();
    const where = store.engine === 'fs' ? 'STORAGE_PATH and TEMP_PATH writable' : 'bucket reachable (probe write and delete)';
    const room = Number.isFinite(free) ? `, ${formatBytes(free)} free` : '';
    const quota =
      config.maxStorageBytes === undefined
        ? ''
        : `, ${formatBytes(await store.usedBytes())} of MAX_STORAGE_BYTES ${formatBytes(config.maxStorageBytes)} used`;
    return check('storage', 'ok', `${store.engine} engine, ${where}${room}${quota}`);
  } catch (error) {
    return check('storage', 'fail', `${config.storageBackend} engine cannot be used: ${errorForLog(error)}`);
  } finally {
    await store?.close();
  }
}

/**
 * Everything an operator checks first, each judged ok, warn or fail; exit 1 when anything fails.
 * It reads the environment as the service does, and reports a bad configuration as a finding.
 */
export async function doctor(env: Record<string, string | undefined>): Promise<Report> {
  const checks: Check[] = [];
  let config: Config | null = null;
  try {
    config = loadConfig(env);
    checks.push(check('config', 'ok', 'every variable is valid'));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // ConfigError never quotes a credential's value (app/config.ts, `sensitive`).
    checks.push(check('config', 'fail', error.problems.join('; ')));
  }

  const redisDependent = ['redis', 'eviction', 'persistence', 'memory', 'worker', 'clock', 'queue'];
  if (config === null) {
    checks.push(
      ...redisDependent.map((name) => check(name, 'skipped', 'the configuration is not valid')),
      check('storage', 'skipped', 'the configuration is not valid'),
    );
  } else {
    let ctx: AdminContext | null = null;
    try {
      ctx = await connect(config);
    } catch (error) {
      const unset = config.redisUrl === undefined && config.redisSentinels === undefined;
      checks.push(check('redis', 'fail', unset ? (error as Error).message : `not reachable within ${REDIS_WAIT_MS / 1000} s`));
      checks.push(...redisDependent.slice(1).map((name) => check(name, 'skipped', 'Redis is not reachable')));
    }
    if (ctx) {
      try {
        checks.push(...(await redisChecks(ctx)));
      } catch (error) {
        checks.push(check('redis', 'fail', `stopped answering: ${(error as Error).message.slice(0, 200)}`));
      } finally {
        await ctx.close();
      }
    }
    checks.push(await storageCheck(config));
  }

  const problems = checks.filter((c) => c.status === 'fail').length;
  const text = [
    columns(checks.map((c) => [c.status === 'fail' ? 'FAIL' : c.status, c.name, c.detail])),
    problems === 0 ? 'no problem found' : `${problems} problem${problems === 1 ? '' : 's'} found`,
  ].join('\n');
  return { exitCode: problems === 0 ? EXIT.ok : EXIT.problem, json: { ok: problems === 0, problems, checks }, text };
}
