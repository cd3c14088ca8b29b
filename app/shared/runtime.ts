import { readFileSync } from 'node:fs';
import { access, constants, mkdir } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import { ConfigError, loadConfig, type RuntimeConfig } from '../config.js';
import { loadOrCreateLocalSecret } from './secret.js';
import { LOG_DIR_MODE } from './logger.js';

/** What both processes do first: parse config (or exit naming every bad variable) and find the secret. */
export async function loadRuntimeConfig(env: Record<string, string | undefined>, service: string): Promise<RuntimeConfig> {
  let config;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const problem of error.problems) process.stderr.write(`cinderbox ${service}: ${problem}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
  if (config.redisUrl === undefined && config.redisSentinels === undefined) {
    process.stderr.write(
      `cinderbox ${service}: REDIS_URL or REDIS_SENTINELS: one is required for start:${service} (npm start runs a private Redis for you)\n`,
    );
    process.exit(78);
  }
  let secret = config.secret;
  try {
    secret ??= await loadOrCreateLocalSecret();
  } catch (error) {
    process.stderr.write(`cinderbox ${service}: ${(error as Error).message}\n`);
    process.exit(78);
  }
  return { ...config, secret };
}

/**
 * The directories a process writes (blobs and partials on the fs engine, the log). One that cannot be
 * made or used stops the process with one line naming its variable, as a bad value does (a bind mount
 * owned by another user is the usual cause: docs/OPERATIONS.md).
 */
export async function ensureDirectories(config: RuntimeConfig, service = 'api'): Promise<void> {
  const wanted: [string, string, number | undefined][] = [];
  if (config.storageBackend === 'fs') wanted.push(['STORAGE_PATH', config.storagePath, 0o700], ['TEMP_PATH', config.tempPath, 0o700]);
  if (config.logDir !== '') wanted.push(['LOG_DIR', config.logDir, LOG_DIR_MODE]);
  for (const [name, dir, mode] of wanted) {
    try {
      await mkdir(dir, { recursive: true, ...(mode !== undefined ? { mode } : {}) });
      await access(dir, constants.W_OK);
    } catch (error) {
      process.stderr.write(
        `cinderbox ${service}: ${name}: cannot use directory ${dir} (${(error as NodeJS.ErrnoException).code ?? 'error'}); it must be writable by this process's user\n`,
      );
      process.exit(73); // EX_CANTCREAT
    }
  }
}

/** Waits for the first connection, so start-up fails clearly instead of serving 503s forever. */
export function waitForRedis(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new Error(`Redis not reachable within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}

function readVersion(): string {
  // Source runs from app/shared, the build from dist/app/shared: look up until package.json.
  for (const relative of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'cinderbox' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here; try the next level up
    }
  }
  return '0.0.0';
}

export const VERSION = readVersion();
