import { createRequire } from 'node:module';
import { isIP, isIPv6 } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { ipv6Groups } from './abuse/client.models.js';
import { parseRate, type Rate } from './http/rate.models.js';
import { KEY_WORDS } from './diceware/wordlist.js';

/**
 * Every environment variable Cinderbox reads, with its default and one line of documentation.
 * This table is the single source: `loadConfig` parses it, and `.env.example` and the README's
 * configuration table are generated from it (`npm run docs:config`) and checked by a test.
 */

const positiveInt = z
  .string()
  .regex(/^\d+$/, 'expected a positive integer')
  .transform(Number)
  .refine((n) => Number.isSafeInteger(n) && n > 0, 'expected a positive integer');

const wholeNumber = z
  .string()
  .regex(/^\d+$/, 'expected a whole number')
  .transform(Number)
  .refine((n) => Number.isSafeInteger(n), 'expected a whole number');

const port = positiveInt.refine((n) => n <= 65535, 'expected a port number 1..65535');

// Minutes may be fractional (SPEC §6): "0.5" is thirty seconds.
const positiveMinutes = z
  .string()
  .regex(/^\d+(\.\d+)?$/, 'expected a positive number of minutes')
  .transform(Number)
  .refine((n) => n > 0, 'expected a positive number of minutes');

const positiveHours = z
  .string()
  .regex(/^\d+(\.\d+)?$/, 'expected a positive number of hours')
  .transform(Number)
  .refine((n) => n > 0, 'expected a positive number of hours');

// z.coerce.boolean() would turn "false" into true; accept only the spellings people write.
const bool = z
  .string()
  .toLowerCase()
  .refine((s) => ['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'].includes(s), 'expected true or false')
  .transform((s) => ['true', '1', 'yes', 'on'].includes(s));

const rate = z.string().transform((s, ctx): Rate => {
  const parsed = parseRate(s);
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: 'expected N/unit such as 30/hour (unit: second, minute, hour, day)' });
    return z.NEVER;
  }
  return parsed;
});

const url = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}, 'expected an http(s) URL');

const redisUrl = z
  .string()
  .refine((s) => /^(rediss?|valkeys?|unix):\/\//.test(s) && URL.canParse(s), 'expected a redis://, rediss:// or unix:// URL');

export interface SentinelAddress {
  host: string;
  port: number;
}

// "10.0.0.1:26379,sentinel-b:26379,[fd00::3]:26379": every item names its port; IPv6 in brackets.
const sentinelList = z.string().transform((s, ctx): SentinelAddress[] => {
  const problem = (message: string) => {
    ctx.addIssue({ code: 'custom', message: `expected host:port,host:port,… (IPv6 as [::1]:26379); ${message}` });
    return z.NEVER;
  };
  const items = s.split(',').map((i) => i.trim());
  if (items.some((i) => i === '')) return problem('an item is empty');
  const addresses: SentinelAddress[] = [];
  for (const item of items) {
    const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)):(\d{1,5})$/.exec(item);
    const port = Number(match?.[3]);
    if (!match || port < 1 || port > 65535) return problem(`"${item}" is not one`);
    if (match[1] !== undefined && !isIPv6(match[1])) return problem(`"${item}" is not one`);
    const host = match[1] ?? match[2]!;
    if (addresses.some((a) => a.host === host && a.port === port)) return problem(`"${item}" is listed twice`);
    addresses.push({ host, port });
  }
  return addresses;
});

const sentinelName = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected 1..64 letters, digits, ., _ or -');

// An empty value is refused rather than read as "no password": unset the variable for none.
const password = z.string().min(1, 'expected a password (unset the variable for none)');

const mimeList = z.string().transform((s, ctx): string[] => {
  const trimmed = s.trim();
  let items: unknown;
  if (trimmed.startsWith('[')) {
    try {
      items = JSON.parse(trimmed);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'expected a comma list or a JSON list of MIME types' });
      return z.NEVER;
    }
  } else {
    items = trimmed === '' ? [] : trimmed.split(',');
  }
  if (!Array.isArray(items) || !items.every((i) => typeof i === 'string')) {
    ctx.addIssue({ code: 'custom', message: 'expected a comma list or a JSON list of MIME types' });
    return z.NEVER;
  }
  const types = items.map((i: string) => i.trim().toLowerCase()).filter(Boolean);
  const bad = types.find((t) => !/^[a-z0-9][a-z0-9!#$&^_.+-]*\/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)$/.test(t));
  if (bad !== undefined) {
    ctx.addIssue({ code: 'custom', message: `expected MIME types such as image/png or image/*; "${bad}" is not one` });
    return z.NEVER;
  }
  return types;
});

const logIp = z.enum(['full', 'hash', 'off'], { message: 'expected full, hash or off' });
const logLevel = z.enum(['error', 'warn', 'info', 'debug'], { message: 'expected error, warn, info or debug' });
const nodeEnv = z.enum(['development', 'production', 'test'], { message: 'expected development, production or test' });

/**
 * Express compiles `trust proxy` with proxy-addr when the app is built (app.ts), after Redis is up:
 * a value it refuses would end the start with a stack trace. Compiled here with the copy Express
 * itself loads, so whatever it refuses is a config error.
 */
const requireFromExpress = createRequire(createRequire(import.meta.url).resolve('express'));
const proxyAddr = requireFromExpress('proxy-addr') as { compile(value: string[]): unknown };

/** More hops than any real chain of proxies: past them the left-most X-Forwarded-For entries are the client's own words. */
export const MAX_TRUST_PROXY_HOPS = 10;
/**
 * The widest network that may be trusted: an IPv4 /8 (10.0.0.0/8, the widest private range), an
 * IPv6 /16, or fc00::/7 and fe80::/10 (unique and link-local). Anything wider trusts the Internet,
 * which could then choose its own address in X-Forwarded-For (and so its own budgets).
 */
const MIN_TRUSTED_PREFIX = { ipv4: 8, ipv6: 16 } as const;

/**
 * Why one trusted IP or CIDR may not be trusted, or null when it may. An IPv4-mapped IPv6 network
 * (::ffff:0:0/96 and inside) is judged as the IPv4 network it maps: proxy-addr matches IPv4 clients with it.
 */
function untrustable(item: string): string | null {
  const [address = '', prefixText, extra] = item.split('/');
  if (extra !== undefined || !isIP(address) || (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText))) {
    return `"${item}" is not an IP address or CIDR`;
  }
  const width = isIP(address) === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? width : Number(prefixText);
  if (prefix < 1 || prefix > width) return `"${item}": the prefix must be 1..${width}`;
  const tooWide = `"${item}" trusts more than an IPv4 /${MIN_TRUSTED_PREFIX.ipv4}`;
  if (width === 32) return prefix < MIN_TRUSTED_PREFIX.ipv4 ? tooWide : null;
  const groups = ipv6Groups(address);
  if (prefix >= 96 && groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return prefix - 96 < MIN_TRUSTED_PREFIX.ipv4 ? tooWide : null;
  }
  const first = groups[0] ?? 0;
  const privateRange = (prefix >= 7 && (first & 0xfe00) === 0xfc00) || (prefix >= 10 && (first & 0xffc0) === 0xfe80);
  if (prefix < MIN_TRUSTED_PREFIX.ipv6 && !privateRange) {
    return `"${item}" trusts more than an IPv6 /${MIN_TRUSTED_PREFIX.ipv6} (private ranges fc00::/7 and fe80::/10 excepted)`;
  }
  return null;
}

// "1" (hops), "loopback", "10.0.0.0/8, 192.168.0.1", … — never "true" (SPEC §4.6), never everyone.
const trustProxy = z.string().transform((s, ctx): number | string[] => {
  const problem = (message: string) => {
    ctx.addIssue({ code: 'custom', message });
    return z.NEVER;
  };
  const trimmed = s.trim();
  if (/^\d+$/.test(trimmed)) {
    const hops = Number(trimmed);
    if (hops > MAX_TRUST_PROXY_HOPS) return problem(`expected at most ${MAX_TRUST_PROXY_HOPS} proxy hops`);
    return hops;
  }
  const items = trimmed
    .split(',')
    .map((i) => i.trim())
    .filter(Boolean);
  const named = ['loopback', 'linklocal', 'uniquelocal'];
  if (items.length === 0 || !items.every((i) => named.includes(i) || /^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(i))) {
    return problem('expected a hop count or a comma list of IPs, CIDRs, loopback, linklocal, uniquelocal (never true)');
  }
  for (const item of items.filter((i) => !named.includes(i))) {
    const why = untrustable(item);
    if (why) return problem(`expected trusted proxies only; ${why}`);
  }
  try {
    proxyAddr.compile(items);
  } catch (error) {
    return problem(`expected trusted proxies only; ${(error as Error).message}`);
  }
  return items;
});

const secret = z.string().refine((s) => Buffer.byteLength(s) >= 32, 'expected at least 32 characters (use: openssl rand -base64 48)');

// S3 (SPEC §10.3). Names as S3 and its compatibles accept them; nothing here is checked against the store.
const storageBackend = z.enum(['fs', 's3'], { message: 'expected fs or s3' });
const s3Region = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/, 'expected a region name such as us-east-1 (R2: auto)');
const s3Bucket = z
  .string()
  .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected a bucket name: 3..63 lowercase letters, digits, dots and hyphens');
// The sweep deletes what it finds under the prefix, so the prefix may not be empty (never the whole
// bucket), and it is a folder of its own: S3 lists by string prefix, so `cinderbox` would also list
// (and the sweep delete) `cinderbox-backups/…`.
const s3Prefix = z
  .string()
  .regex(/^[A-Za-z0-9!_.*'()/-]{1,256}$/, "expected 1..256 characters of A-Z a-z 0-9 ! _ . * ' ( ) - /")
  .refine((s) => s.endsWith('/'), 'expected a folder of its own, ending in / (such as blobs/): the sweep deletes everything under it')
  .refine(
    (s) =>
      s
        .split('/')
        .slice(0, -1)
        .every((part) => part !== '' && part !== '.' && part !== '..'),
    'expected path segments without /, //, . or .. (such as blobs/)',
  );
// Refused only when empty, so a config error can never echo a credential back (it quotes what it got).
const s3Credential = z.string().min(1, 'expected a non-empty value');

// Sent in an Authorization header: RFC 6750 token characters only, and too long to guess.
const bearerToken = z
  .string()
  .regex(/^[A-Za-z0-9._~+/-]+=*$/, 'expected letters, digits and -._~+/ only (use: openssl rand -hex 32)')
  .refine((s) => s.length >= 16, 'expected at least 16 characters (use: openssl rand -hex 32)');

const kdfCost = positiveInt.refine((n) => n >= 10 && n <= 20, 'expected log2 of the scrypt cost, 10..20');

interface Variable<K extends string = string, S extends z.ZodType = z.ZodType, D extends string | undefined = string | undefined> {
  /** The field of `Config` that holds the parsed value. */
  key: K;
  schema: S;
  default: D;
  doc: string;
  /** Its value is a credential (or may hold one): a config error names the variable but never quotes the value. */
  sensitive?: boolean;
}

function variable<const K extends string, S extends z.ZodType, D extends string | undefined>(
  key: K,
  schema: S,
  defaultValue: D,
  doc: string,
  options: { sensitive?: boolean } = {},
): Variable<K, S, D> {
  return { key, schema, default: defaultValue, doc, ...options };
}

export const VARIABLES = {
  NODE_ENV: variable(
    'nodeEnv',
    nodeEnv,
    'development',
    'production requires CINDERBOX_SECRET (start:api and start:worker always need REDIS_URL or REDIS_SENTINELS)',
  ),
  PORT: variable('port', port, '8000', 'TCP port of the API'),
  HOST: variable(
    'host',
    z.string().min(1, 'expected a host name or address'),
    '127.0.0.1',
    "address the API and the worker's metrics bind (0.0.0.0 in the image)",
  ),
  PUBLIC_URL: variable(
    'publicUrl',
    url.transform((s) => s.replace(/\/+$/, '')),
    undefined,
    'base URL used in links (https://drop.example.com); unset = built from the request',
  ),
  REDIS_URL: variable(
    'redisUrl',
    redisUrl,
    undefined,
    'Redis/Valkey URL; unset (and no REDIS_SENTINELS) = `npm start` runs a private redis-server on a unix socket only your user can reach',
    { sensitive: true },
  ),
  REDIS_SENTINELS: variable(
    'redisSentinels',
    sentinelList,
    undefined,
    'Sentinels to ask for the primary, host:port,host:port (IPv6 as [::1]:26379); instead of REDIS_URL',
  ),
  REDIS_SENTINEL_NAME: variable('redisSentinelName', sentinelName, 'mymaster', 'name of the primary the sentinels monitor'),
  REDIS_SENTINEL_PASSWORD: variable(
    'redisSentinelPassword',
    password,
    undefined,
    'password of the sentinels (their requirepass); unset = none',
  ),
  REDIS_PASSWORD: variable(
    'redisPassword',
    password,
    undefined,
    'password of the Redis/Valkey nodes; with REDIS_URL, used when the URL has none',
  ),
  REDIS_PREFIX: variable(
    'redisPrefix',
    z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'expected 1..32 letters, digits, _ or -'),
    'cbx',
    'prefix of every Redis key and queue',
  ),
  STORAGE_PATH: variable(
    'storagePath',
    z.string().min(1, 'expected a directory'),
    './storage/uploads',
    'directory of encrypted blobs (Cinderbox owns it)',
  ),
  TEMP_PATH: variable(
    'tempPath',
    z.string().min(1, 'expected a directory'),
    './storage/temp',
    'directory of partial uploads, same filesystem as STORAGE_PATH',
  ),
  MAX_FILE_SIZE: variable('maxFileSize', positiveInt, '10485760', 'largest upload in bytes'),
  MAX_FILES_PER_UPLOAD: variable(
    'maxFilesPerUpload',
    positiveInt.refine((n) => n <= 1_000_000, 'expected 1..1000000 files'),
    '100',
    'most `file` parts in one POST /upload; several become one drop, stored as a zip (MAX_FILE_SIZE limits their total)',
  ),
  MAX_STORAGE_BYTES: variable(
    'maxStorageBytes',
    positiveInt,
    undefined,
    'quota for all blobs in bytes; unset = only free disk space is checked',
  ),
  ALLOWED_MIME_TYPES: variable(
    'allowedMimeTypes',
    mimeList,
    '',
    'detected types allowed (comma or JSON list, type/* wildcards); empty = all',
  ),
  DEFAULT_EXPIRY_MINUTES: variable('defaultExpiryMinutes', positiveMinutes, '10', 'expiry when the upload names none'),
  MIN_EXPIRY_MINUTES: variable('minExpiryMinutes', positiveMinutes, '1', 'shortest expiry an upload may ask for'),
  MAX_EXPIRY_MINUTES: variable('maxExpiryMinutes', positiveMinutes, '60', 'longest expiry an upload may ask for'),
  DEFAULT_USES: variable('defaultUses', positiveInt, '1', 'downloads allowed when the upload names none'),
  MAX_USES: variable('maxUses', positiveInt, '5', 'most downloads an upload may ask for'),
  DICEWARE_WORDLIST_PATH: variable(
    'wordlistPath',
    z.string().min(1, 'expected a file path'),
    'data/eff_large_wordlist.txt',
    'EFF large wordlist (7,776 words)',
  ),
  DICEWARE_WORDS: variable(
    'dicewareWords',
    positiveInt.refine((n) => n >= KEY_WORDS.min && n <= KEY_WORDS.max, `expected ${KEY_WORDS.min}..${KEY_WORDS.max} words`),
    '4',
    `words in a passphrase (uploads may ask for up to ${KEY_WORDS.max})`,
  ),
  KDF_COST: variable('kdfCostLog2', kdfCost, '14', 'scrypt cost as log2 N (14 = 16384, about 30 ms here; see docs/FORMAT.md)'),
  KDF_CONCURRENCY: variable(
    'kdfConcurrency',
    positiveInt,
    '2',
    "scrypt computations at once, at most libuv's pool less one (UV_THREADPOOL_SIZE, 4 by default: 3); more wait",
  ),
  KDF_MAX_QUEUE: variable(
    'kdfMaxQueue',
    positiveInt,
    '256',
    'lookups that may wait for the KDF, all clients together; beyond that 503 with Retry-After',
  ),
  KDF_MAX_PER_CLIENT: variable(
    'kdfMaxPerClient',
    positiveInt,
    '16',
    'lookups one client (an IP or IPv6 /64) may have at the KDF, waiting or running; more get 503',
  ),
  KDF_POOL_SIZE: variable(
    'kdfPoolSize',
    wholeNumber,
    '32',
    'pre-derived passphrases kept for uploads, refilled only while the KDF idles; 0 = off',
  ),
  UPLOAD_RATE_LIMIT: variable('uploadRateLimit', rate, '30/hour', 'uploads per client IP'),
  HEALTH_RATE_LIMIT: variable('healthRateLimit', rate, '1/second', 'health checks per client IP, counted per API replica'),
  LOOKUP_RATE_LIMIT: variable(
    'lookupRateLimit',
    rate,
    '60/minute',
    'key lookups (download, status, preview, delete) per client IP, before any KDF work',
  ),
  DOWNLOAD_FAIL_LIMIT: variable('downloadFailLimit', positiveInt, '10', 'failed lookups within 10 minutes that block an IP'),
  DOWNLOAD_BLOCK_WINDOW: variable('downloadBlockSeconds', positiveInt, '1800', 'seconds an IP stays blocked'),
  RESUME_WINDOW_SECONDS: variable(
    'resumeWindowSeconds',
    wholeNumber,
    '900',
    'how long a started download may be resumed (Range + If-Range), even after it burned the file; 0 = off',
  ),
  MAX_DOWNLOAD_SECONDS: variable(
    'maxDownloadSeconds',
    positiveInt,
    '3600',
    'longest a download keeps its blob from the janitor; past it a deleted or burned blob may be shredded',
  ),
  UPLOAD_STALL_SECONDS: variable('uploadStallSeconds', positiveInt, '30', 'an upload body that sends nothing for this long is cut off'),
  CLEANUP_INTERVAL_MINUTES: variable('cleanupIntervalMinutes', positiveMinutes, '10', 'how often the janitor sweeps orphans'),
  ORPHAN_AGE_MINUTES: variable('orphanAgeMinutes', positiveMinutes, '15', 'age after which a file without a live record is swept'),
  SECURE_SHRED_PASSES: variable(
    'shredPasses',
    positiveInt.refine((n) => n <= 35, 'expected 1..35 passes'),
    '1',
    'random overwrites before unlink',
  ),
  TOMBSTONE_HOURS: variable('tombstoneHours', positiveHours, '24', 'how long a burned/expired/deleted key answers 410 instead of 404'),
  TRUST_PROXY: variable(
    'trustProxy',
    trustProxy,
    undefined,
    `proxies trusted for X-Forwarded-For: hop count (at most ${MAX_TRUST_PROXY_HOPS}) or IP/CIDR list (none wider than IPv4 /8 or IPv6 /16); unset = none`,
  ),
  CINDERBOX_SECRET: variable('secret', secret, undefined, 'server secret, 32+ random bytes; required in production', { sensitive: true }),
  LOG_LEVEL: variable('logLevel', logLevel, 'info', 'error, warn, info or debug'),
  LOG_DIR: variable('logDir', z.string(), 'logs', 'directory of cinderbox-<service>.log; empty = stdout only'),
  LOG_IP: variable('logIp', logIp, 'hash', 'client IPs in logs: full, hash (keyed, stable per deployment) or off'),
  METRICS_ENABLED: variable('metricsEnabled', bool, 'false', "serve the API's Prometheus metrics at /metrics"),
  METRICS_TOKEN: variable(
    'metricsToken',
    bearerToken,
    undefined,
    'bearer token both /metrics endpoints require (Authorization: Bearer <token>); unset = none',
    { sensitive: true },
  ),
  WORKER_METRICS_PORT: variable(
    'workerMetricsPort',
    port,
    undefined,
    "TCP port of the worker's /metrics (on HOST); unset = the worker serves nothing",
  ),
  WORKER_HEALTH_FILE: variable(
    'workerHealthFile',
    z.string().refine((s) => s === '' || (path.isAbsolute(s) && !s.endsWith('/')), 'expected an absolute file path (empty = none)'),
    '',
    "file the worker rewrites on every heartbeat that reaches Redis (every 5 s), for a container's health check; empty = none",
  ),
  STORAGE_BACKEND: variable(
    'storageBackend',
    storageBackend,
    'fs',
    'where blobs live: fs (STORAGE_PATH/TEMP_PATH) or s3 (an S3-compatible bucket, S3_*)',
  ),
  S3_ENDPOINT: variable('s3Endpoint', url, undefined, 'S3 API URL (MinIO, R2, Ceph, …: http://minio:9000); unset = AWS S3 in S3_REGION'),
  S3_REGION: variable('s3Region', s3Region, 'us-east-1', 'region of the bucket (R2: auto)'),
  S3_BUCKET: variable('s3Bucket', s3Bucket, undefined, 'bucket of the encrypted blobs; required when STORAGE_BACKEND=s3'),
  S3_PREFIX: variable(
    's3Prefix',
    s3Prefix,
    'blobs/',
    'key prefix of the blobs; Cinderbox owns everything under it (the sweep deletes strangers)',
  ),
  S3_ACCESS_KEY_ID: variable(
    's3AccessKeyId',
    s3Credential,
    undefined,
    'access key id; unset = the AWS SDK default chain (AWS_* variables, instance or task role)',
  ),
  S3_SECRET_ACCESS_KEY: variable(
    's3SecretAccessKey',
    s3Credential,
    undefined,
    'secret access key, set together with S3_ACCESS_KEY_ID; never logged',
  ),
  S3_FORCE_PATH_STYLE: variable(
    's3ForcePathStyle',
    bool,
    undefined,
    'bucket in the URL path instead of the host name; unset = true when S3_ENDPOINT is set, false for AWS',
  ),
} satisfies Record<string, Variable>;

type Variables = typeof VARIABLES;

/** The parsed configuration: one field per variable, named by its `key`; unset optional variables are undefined. */
export type Config = {
  [N in keyof Variables as Variables[N]['key']]: Variables[N]['default'] extends string
    ? z.output<Variables[N]['schema']>
    : z.output<Variables[N]['schema']> | undefined;
};

/**
 * Threads of libuv's pool, read as libuv reads UV_THREADPOOL_SIZE (4 when unset, 1..1024). scrypt runs
 * there, and so do file I/O and DNS lookups: KDF_CONCURRENCY must leave them one thread at least.
 */
export function threadPoolSize(value: string | undefined): number {
  if (value === undefined) return 4;
  const n = Number.parseInt(value, 10);
  return Number.isNaN(n) || n < 1 ? 1 : Math.min(n, 1024);
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

/** Parses the environment once; throws ConfigError with one line per problem, each naming its variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const problems: string[] = [];
  const values: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(VARIABLES) as [string, Variable][]) {
    const raw = env[name] ?? spec.default;
    if (raw === undefined) {
      values[spec.key] = undefined;
      continue;
    }
    const result = spec.schema.safeParse(raw);
    if (result.success) values[spec.key] = result.data;
    else
      problems.push(
        `${name}: ${result.error.issues[0]?.message ?? 'invalid'}${spec.sensitive ? ' (value not shown)' : `, got ${JSON.stringify(raw)}`}`,
      );
  }
  const config = values as Config;
  if (problems.length === 0) {
    if (config.minExpiryMinutes > config.defaultExpiryMinutes)
      problems.push(
        `MIN_EXPIRY_MINUTES: must not exceed DEFAULT_EXPIRY_MINUTES (${config.defaultExpiryMinutes}), got "${env.MIN_EXPIRY_MINUTES ?? ''}"`,
      );
    if (config.defaultExpiryMinutes > config.maxExpiryMinutes)
      problems.push(
        `DEFAULT_EXPIRY_MINUTES: must not exceed MAX_EXPIRY_MINUTES (${config.maxExpiryMinutes}), got "${env.DEFAULT_EXPIRY_MINUTES ?? ''}"`,
      );
    if (config.defaultUses > config.maxUses)
      problems.push(`DEFAULT_USES: must not exceed MAX_USES (${config.maxUses}), got "${env.DEFAULT_USES ?? ''}"`);
    const poolThreads = threadPoolSize(env.UV_THREADPOOL_SIZE);
    if (config.kdfConcurrency > poolThreads - 1)
      problems.push(
        poolThreads > 1
          ? `KDF_CONCURRENCY: expected at most ${poolThreads - 1} (libuv's pool has ${poolThreads} threads and file I/O needs one; raise UV_THREADPOOL_SIZE for more), got "${env.KDF_CONCURRENCY ?? ''}"`
          : `KDF_CONCURRENCY: libuv's pool has 1 thread (UV_THREADPOOL_SIZE), none left for scrypt beside file I/O, got "${env.KDF_CONCURRENCY ?? ''}"`,
      );
    if (config.nodeEnv === 'production' && config.secret === undefined)
      problems.push('CINDERBOX_SECRET: required when NODE_ENV=production (use: openssl rand -base64 48)');
    if (config.redisUrl !== undefined && config.redisSentinels !== undefined)
      problems.push('REDIS_URL, REDIS_SENTINELS: set one or the other, not both (REDIS_SENTINELS finds the primary through Sentinel)');
    if (config.storageBackend === 's3' && config.s3Bucket === undefined) problems.push('S3_BUCKET: required when STORAGE_BACKEND=s3');
    if ((config.s3AccessKeyId === undefined) !== (config.s3SecretAccessKey === undefined)) {
      problems.push(
        config.s3AccessKeyId === undefined
          ? 'S3_ACCESS_KEY_ID: required when S3_SECRET_ACCESS_KEY is set'
          : 'S3_SECRET_ACCESS_KEY: required when S3_ACCESS_KEY_ID is set',
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** The config with a secret guaranteed present: what the processes run with. */
export type RuntimeConfig = Config & { secret: string };
