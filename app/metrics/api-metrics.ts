import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { KdfStats } from '../kdf/kdf.js';
import type { KeyPoolStats } from '../kdf/key-pool.js';
import type { Logger } from '../shared/logger.js';
import type { RedisKeys } from '../shared/redis-keys.js';
import { tapLogger, type LogObserver } from './log-tap.js';
import { amount, methodLabel, oneOf, redisInfoFields, routeLabel, statusClass } from './metrics.models.js';
import { createRegistry, registerQueueDepth, within } from './registry.js';

interface StatsProvider<T> {
  stats(): T;
}

interface ApiMetricsDeps {
  queue: Pick<Queue, 'getJobCounts' | 'keys'>;
  redis: Redis;
  keys: Pick<RedisKeys, 'heartbeat'>;
  version: string;
  /** The fair KDF scheduler; its series are left out until one is given. */
  kdf?: StatsProvider<KdfStats> | undefined;
  /** The pre-derived key pool; its series are left out until one is given. */
  keyPool?: StatsProvider<KeyPoolStats> | undefined;
}

interface ApiMetrics {
  registry: Registry;
  observe: LogObserver;
  /** The logger, tapped: what it logs also moves the counters. */
  tap(log: Logger): Logger;
}

/** Request latency buckets, seconds: a status answer takes milliseconds, a large transfer minutes. */
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * The API's metrics (SPEC §3, §10.6). Domain counters come from the log events (log-tap.ts);
 * request latency from `request_completed`, labelled by route template, never by raw path;
 * KDF and key-pool figures from their stats(); queue depth, worker liveness and Redis memory are
 * read from Redis at scrape time.
 */
export function createApiMetrics(deps: ApiMetricsDeps): ApiMetrics {
  const registry = createRegistry('api', deps.version);
  const registers = [registry];
  const counter = (name: string, help: string, labelNames: string[] = []) => new Counter({ name, help, labelNames, registers });

  const uploads = counter('cinderbox_uploads_total', 'Files uploaded.');
  const uploadBytes = counter('cinderbox_upload_bytes_total', 'Plaintext bytes uploaded.');
  const downloads = counter('cinderbox_downloads_total', 'Downloads started (each spent one use).');
  const downloadBytes = counter(
    'cinderbox_download_bytes_total',
    'Plaintext bytes of the downloads started (a download cut short counts whole).',
  );
  const resumes = counter('cinderbox_download_resumes_total', 'Downloads resumed (206 with a valid If-Range); they spend no use.');
  const resumedBytes = counter('cinderbox_download_resumed_bytes_total', 'Plaintext bytes of the resumed ranges.');
  const burns = counter('cinderbox_burns_total', 'Files burned by their last download.');
  const deletes = counter('cinderbox_deletes_total', 'Files deleted by their sender.');
  const blocks = counter(
    'cinderbox_ip_blocks_total',
    'Blocks for failed lookups: of a client (IPv4 address, IPv6 /64) or of a whole IPv6 /48.',
    ['scope'],
  );
  const integrity = counter(
    'cinderbox_integrity_failures_total',
    'Stored data that failed authentication, before or after the first byte was sent.',
    ['stage'],
  );
  // Known series start at 0, so the first event shows in rate() and a dashboard shows 0, not "no data".
  for (const stage of ['before_first_byte', 'after_first_byte']) integrity.inc({ stage }, 0);
  for (const scope of ['client', 'aggregate']) blocks.inc({ scope }, 0);
  const requests = new Histogram({
    name: 'cinderbox_http_request_duration_seconds',
    help: 'Time from request to response end, by method, route template and status class.',
    labelNames: ['method', 'route', 'status_class'],
    buckets: REQUEST_BUCKETS,
    registers,
  });

  const observe: LogObserver = (event, fields) => {
    switch (event) {
      case 'request_completed': {
        const seconds = amount(fields.duration_ms);
        if (seconds !== null)
          requests.observe(
            { method: methodLabel(fields.method), route: routeLabel(fields.route), status_class: statusClass(fields.status_code) },
            seconds / 1000,
          );
        return;
      }
      case 'file_uploaded':
        uploads.inc();
        uploadBytes.inc(amount(fields.size) ?? 0);
        return;
      case 'file_downloaded':
        downloads.inc();
        downloadBytes.inc(amount(fields.size) ?? 0);
        return;
      case 'download_resumed':
        resumes.inc();
        resumedBytes.inc(amount(fields.bytes) ?? 0);
        return;
      case 'file_burned':
        burns.inc();
        return;
      case 'file_deleted':
        deletes.inc();
        return;
      case 'ip_blocked':
        blocks.inc({ scope: oneOf(['client', 'aggregate'] as const, fields.scope) });
        return;
      case 'integrity_check_failed':
        integrity.inc({ stage: fields.after_first_byte === true ? 'after_first_byte' : 'before_first_byte' });
        return;
    }
  };

  registerQueueDepth(registry, deps.queue, deps.redis);
  registerRedisState(registry, deps.redis, deps.keys);
  if (deps.kdf) registerKdf(registry, deps.kdf);
  if (deps.keyPool) registerKeyPool(registry, deps.keyPool);

  return { registry, observe, tap: (log) => tapLogger(log, observe) };
}

/**
 * What the API can see of its surroundings at scrape time: whether Redis answers, its memory
 * against maxmemory (with noeviction a full Redis refuses uploads), and the worker's heartbeat.
 */
function registerRedisState(registry: Registry, redis: Redis, keys: Pick<RedisKeys, 'heartbeat'>): void {
  const registers = [registry];
  const info = () => within(redis.info('memory')).then(redisInfoFields);
  new Gauge({
    name: 'cinderbox_redis_up',
    help: '1 when Redis answered this scrape, else 0.',
    registers,
    async collect() {
      this.set((await within(redis.ping()).catch(() => null)) === 'PONG' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'cinderbox_redis_memory_used_bytes',
    help: 'Redis used_memory (left out when Redis does not answer).',
    registers,
    async collect() {
      const used = Number((await info().catch(() => undefined))?.used_memory);
      if (Number.isFinite(used)) this.set(used);
      else this.remove();
    },
  });
  new Gauge({
    name: 'cinderbox_redis_memory_max_bytes',
    help: 'Redis maxmemory; 0 means no limit (then the host runs out first).',
    registers,
    async collect() {
      const max = Number((await info().catch(() => undefined))?.maxmemory);
      if (Number.isFinite(max)) this.set(max);
      else this.remove();
    },
  });
  new Gauge({
    name: 'cinderbox_worker_up',
    help: "1 while a janitor worker's heartbeat key lives (refreshed every 5 s, TTL 15 s), else 0.",
    registers,
    async collect() {
      const alive = await within(redis.exists(keys.heartbeat())).catch(() => null);
      if (alive === null) this.remove();
      else this.set(alive === 1 ? 1 : 0);
    },
  });
}

/** A counter kept by someone else (a stats() total), copied in at scrape time. */
function copiedCounter(registry: Registry, name: string, help: string, labelNames: string[], read: () => Record<string, number> | number) {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      const value = read();
      if (typeof value === 'number') this.inc(value);
      else for (const [label, n] of Object.entries(value)) this.inc({ [labelNames[0]!]: label }, n);
    },
  });
}

function registerKdf(registry: Registry, kdf: StatsProvider<KdfStats>): void {
  const registers = [registry];
  new Gauge({
    name: 'cinderbox_kdf_slots',
    help: 'Derivations the KDF runs at once (KDF_CONCURRENCY).',
    registers,
    collect() {
      this.set(kdf.stats().concurrency);
    },
  });
  new Gauge({
    name: 'cinderbox_kdf_active',
    help: 'Derivations running now: foreground (lookups, uploads) and background (key pool refills).',
    labelNames: ['class'],
    registers,
    collect() {
      const s = kdf.stats();
      this.set({ class: 'foreground' }, s.activeForeground);
      this.set({ class: 'background' }, s.activeBackground);
    },
  });
  new Gauge({
    name: 'cinderbox_kdf_queued',
    help: 'Derivations waiting for a slot.',
    labelNames: ['class'],
    registers,
    collect() {
      const s = kdf.stats();
      this.set({ class: 'foreground' }, s.queued);
      this.set({ class: 'background' }, s.queuedBackground);
    },
  });
  new Gauge({
    name: 'cinderbox_kdf_clients',
    help: 'Clients (IPv4 address or IPv6 /64) with a derivation queued or running.',
    registers,
    collect() {
      this.set(kdf.stats().clients);
    },
  });
  copiedCounter(registry, 'cinderbox_kdf_derivations_total', 'Derivations started.', ['class'], () => kdf.stats().started);
  copiedCounter(
    registry,
    'cinderbox_kdf_refusals_total',
    'Derivations refused at once (503) by the cap that refused them: client, aggregate (/24, /48), global queue, or background.',
    ['cap'],
    () => kdf.stats().refused,
  );
  copiedCounter(
    registry,
    'cinderbox_kdf_displaced_total',
    'Queued derivations refused later to make room for a lighter client.',
    [],
    () => kdf.stats().displaced,
  );
}

function registerKeyPool(registry: Registry, pool: StatsProvider<KeyPoolStats>): void {
  const registers = [registry];
  new Gauge({
    name: 'cinderbox_key_pool_entries',
    help: 'Pre-derived upload keys ready now.',
    registers,
    collect() {
      this.set(pool.stats().size);
    },
  });
  new Gauge({
    name: 'cinderbox_key_pool_capacity',
    help: 'Entries the key pool holds when full (KDF_POOL_SIZE).',
    registers,
    collect() {
      this.set(pool.stats().capacity);
    },
  });
  copiedCounter(registry, 'cinderbox_key_pool_hits_total', 'Uploads that took a pre-derived key.', [], () => pool.stats().hits);
  copiedCounter(
    registry,
    'cinderbox_key_pool_misses_total',
    'Uploads that found the pool empty and derived on demand.',
    [],
    () => pool.stats().misses,
  );
  copiedCounter(
    registry,
    'cinderbox_key_pool_dropped_total',
    'Entries dropped unused (too old, or at stop).',
    [],
    () => pool.stats().dropped,
  );
}
