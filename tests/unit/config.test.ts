import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { loadConfig, VARIABLES } from '../../app/config.js';
import { renderEnvExample, renderReadmeTable } from '../../scripts/config-docs.js';
import { problemsOf } from '../helpers/config.js';

// One value per variable that must be refused (variables whose every string is valid are absent).
const BAD_VALUES: Record<string, string> = {
  NODE_ENV: 'staging',
  PORT: '70000',
  HOST: '',
  PUBLIC_URL: 'ftp://example.com',
  REDIS_URL: 'localhost:6379',
  REDIS_SENTINELS: '10.0.0.1:26379,::1:26379',
  REDIS_SENTINEL_NAME: 'my master',
  REDIS_SENTINEL_PASSWORD: '',
  REDIS_PASSWORD: '',
  REDIS_PREFIX: 'has space',
  STORAGE_PATH: '',
  TEMP_PATH: '',
  MAX_FILE_SIZE: 'lots',
  MAX_FILES_PER_UPLOAD: '0',
  MAX_STORAGE_BYTES: '-5',
  ALLOWED_MIME_TYPES: 'image/png, not a type',
  DEFAULT_EXPIRY_MINUTES: 'ten',
  MIN_EXPIRY_MINUTES: 'never',
  MAX_EXPIRY_MINUTES: '0',
  DEFAULT_USES: '1.5',
  MAX_USES: '0',
  DICEWARE_WORDLIST_PATH: '',
  DICEWARE_WORDS: '2',
  KDF_COST: '30',
  KDF_CONCURRENCY: '0',
  KDF_MAX_QUEUE: 'none',
  KDF_MAX_PER_CLIENT: '0',
  KDF_POOL_SIZE: '-1',
  UPLOAD_RATE_LIMIT: '30 per hour',
  HEALTH_RATE_LIMIT: '1/fortnight',
  LOOKUP_RATE_LIMIT: '0/minute',
  DOWNLOAD_FAIL_LIMIT: 'many',
  DOWNLOAD_BLOCK_WINDOW: '-1',
  RESUME_WINDOW_SECONDS: 'forever',
  MAX_DOWNLOAD_SECONDS: '1.5',
  UPLOAD_STALL_SECONDS: '0',
  CLEANUP_INTERVAL_MINUTES: '-3',
  ORPHAN_AGE_MINUTES: 'soon',
  SECURE_SHRED_PASSES: '100',
  TOMBSTONE_HOURS: '0',
  TRUST_PROXY: 'true',
  CINDERBOX_SECRET: 'short',
  LOG_LEVEL: 'verbose',
  LOG_IP: 'partial',
  METRICS_ENABLED: 'maybe',
  STORAGE_BACKEND: 'gcs',
  S3_ENDPOINT: 'minio:9000',
  S3_REGION: 'us east 1',
  S3_BUCKET: 'My_Bucket',
  S3_PREFIX: '/blobs/',
  S3_ACCESS_KEY_ID: '',
  S3_SECRET_ACCESS_KEY: '',
  S3_FORCE_PATH_STYLE: 'sometimes',
  METRICS_TOKEN: 'has spaces in it, and is long',
  WORKER_METRICS_PORT: '0',
  WORKER_HEALTH_FILE: 'worker.beat',
};

describe('configuration', () => {
  it('starts with the documented defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8000);
    expect(config.host).toBe('127.0.0.1');
    expect(config.maxFileSize).toBe(10_485_760);
    expect(config.defaultExpiryMinutes).toBe(10);
    expect(config.maxExpiryMinutes).toBe(60);
    expect(config.defaultUses).toBe(1);
    expect(config.maxUses).toBe(5);
    expect(config.dicewareWords).toBe(4);
    expect(config.uploadRateLimit).toMatchObject({ limit: 30, windowMs: 3_600_000 });
    expect(config.healthRateLimit).toMatchObject({ limit: 1, windowMs: 1_000 });
    expect(config.lookupRateLimit).toMatchObject({ limit: 60, windowMs: 60_000 });
    expect(config.downloadFailLimit).toBe(10);
    expect(config.downloadBlockSeconds).toBe(1800);
    expect(config.redisPrefix).toBe('cbx');
    expect(config.logIp).toBe('hash');
    expect(config.logDir).toBe('logs');
    expect(config.metricsEnabled).toBe(false);
    expect(config.trustProxy).toBeUndefined();
    expect(config.allowedMimeTypes).toEqual([]);
  });

  it('has a refused value in this test for every variable of the schema', () => {
    const everyStringValid = ['LOG_DIR']; // an empty LOG_DIR means stdout only
    expect(Object.keys(BAD_VALUES).sort()).toEqual(
      Object.keys(VARIABLES)
        .filter((n) => !everyStringValid.includes(n))
        .sort(),
    );
  });

  for (const [name, value] of Object.entries(BAD_VALUES)) {
    it(`refuses ${name}=${JSON.stringify(value)} with one line naming ${name}`, () => {
      const problems = problemsOf({ [name]: value });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(new RegExp(`^${name}: `));
    });
  }

  it('reports every bad variable at once, one line each, quoting what it got', () => {
    const problems = problemsOf({ MAX_FILE_SIZE: 'lots', PORT: 'abc', LOG_IP: 'x' });
    expect(problems).toContain('MAX_FILE_SIZE: expected a positive integer, got "lots"');
    expect(problems).toHaveLength(3);
  });

  it('never quotes the value of a variable that holds a credential', () => {
    const values = {
      CINDERBOX_SECRET: 'almost-the-real-secret',
      METRICS_TOKEN: 'short-token',
      REDIS_URL: 'http://user:hunter2@redis:6379',
    };
    const problems = problemsOf(values);
    expect(problems).toHaveLength(3);
    for (const value of Object.values(values)) expect(problems.join('\n')).not.toContain(value);
    expect(problems).toContain('METRICS_TOKEN: expected at least 16 characters (use: openssl rand -hex 32) (value not shown)');
  });

  it('reads the metrics token and the worker metrics port, both off by default', () => {
    expect(loadConfig({}).metricsToken).toBeUndefined();
    expect(loadConfig({}).workerMetricsPort).toBeUndefined();
    const config = loadConfig({ METRICS_TOKEN: 'a'.repeat(64), WORKER_METRICS_PORT: '9464' });
    expect(config.metricsToken).toBe('a'.repeat(64));
    expect(config.workerMetricsPort).toBe(9464);
  });

  it('requires CINDERBOX_SECRET in production', () => {
    expect(problemsOf({ NODE_ENV: 'production' })).toEqual([expect.stringMatching(/^CINDERBOX_SECRET: required when NODE_ENV=production/)]);
    expect(problemsOf({ NODE_ENV: 'production', CINDERBOX_SECRET: 'x'.repeat(32) })).toEqual([]);
  });

  it('parses booleans by their spelling, so "false" is false', () => {
    expect(loadConfig({ METRICS_ENABLED: 'false' }).metricsEnabled).toBe(false);
    expect(loadConfig({ METRICS_ENABLED: 'true' }).metricsEnabled).toBe(true);
    expect(loadConfig({ METRICS_ENABLED: '0' }).metricsEnabled).toBe(false);
  });

  it('accepts fractional minutes and hours', () => {
    const config = loadConfig({
      MIN_EXPIRY_MINUTES: '0.25',
      DEFAULT_EXPIRY_MINUTES: '0.5',
      ORPHAN_AGE_MINUTES: '0.25',
      TOMBSTONE_HOURS: '1.5',
    });
    expect(config.defaultExpiryMinutes).toBe(0.5);
    expect(config.orphanAgeMinutes).toBe(0.25);
    expect(config.tombstoneHours).toBe(1.5);
  });

  it('reads MIME lists as comma or JSON lists, with wildcards', () => {
    expect(loadConfig({ ALLOWED_MIME_TYPES: 'image/*, application/pdf' }).allowedMimeTypes).toEqual(['image/*', 'application/pdf']);
    expect(loadConfig({ ALLOWED_MIME_TYPES: '["text/plain","image/png"]' }).allowedMimeTypes).toEqual(['text/plain', 'image/png']);
  });

  it('reads TRUST_PROXY as hops or a list, never as true', () => {
    expect(loadConfig({ TRUST_PROXY: '1' }).trustProxy).toBe(1);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toEqual(['loopback', '10.0.0.0/8']);
  });

  it('refuses defaults above their maxima', () => {
    expect(problemsOf({ DEFAULT_USES: '6' })).toEqual([expect.stringMatching(/^DEFAULT_USES: /)]);
    expect(problemsOf({ DEFAULT_EXPIRY_MINUTES: '90' })).toEqual([expect.stringMatching(/^DEFAULT_EXPIRY_MINUTES: /)]);
  });

  it('keeps .env.example and the README configuration table in sync with the schema', async () => {
    expect(await readFile('.env.example', 'utf8')).toBe(renderEnvExample());
    expect(await readFile('README.md', 'utf8')).toContain(renderReadmeTable());
  });
});
