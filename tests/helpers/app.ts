import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, inject } from 'vitest';
import { assembleAppDeps, createApp, type AppDeps } from '../../app/app.js';
import { loadConfig, type RuntimeConfig } from '../../app/config.js';
import { createLogger } from '../../app/shared/logger.js';
import { createApiRedis } from '../../app/shared/redis.js';
import { ensureDirectories, waitForRedis } from '../../app/shared/runtime.js';
import { configureServerTimeouts } from '../../app/http/timeouts.js';
import type { BlobStore } from '../../app/blobs/blob-store.js';
import { storeFromConfig } from '../../app/blobs/store-from-config.js';
import { clearIfExternal, engineEnv, storageView, type StorageView } from './engine.js';
import { runTs, type RunningProcess } from './processes.js';
import { startTestRedis, type TestRedis } from './redis-server.js';

export const TEST_SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';

/**
 * Environment for tests: generous limits, cheap KDF, a private prefix, and this project's storage
 * engine (tests/helpers/engine.ts) with private directories under `dir` and, on s3, a key prefix made
 * from `prefix`: an app and a worker given the same `dir` and `prefix` share their blobs.
 */
export function testEnv(dir: string, prefix: string, redisUrl: string, env: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    ...engineEnv(dir, prefix),
    LOG_DIR: '',
    CINDERBOX_SECRET: TEST_SECRET,
    KDF_COST: '10',
    HEALTH_RATE_LIMIT: '10000/second',
    UPLOAD_RATE_LIMIT: '10000/minute',
    LOOKUP_RATE_LIMIT: '10000/minute',
    DOWNLOAD_FAIL_LIMIT: '10000',
    ...env,
  };
}

export function uniquePrefix(): string {
  return `t${randomBytes(5).toString('hex')}`;
}

export interface LogLine {
  timestamp: string;
  level: string;
  event: string;
  service: string;
  [field: string]: unknown;
}

export interface TestApp {
  url: string;
  config: RuntimeConfig;
  deps: AppDeps;
  dir: string;
  /** What the app stored, seen through its engine and its medium (engine-neutral). */
  storage: StorageView;
  /** What the app asked of its storage engine, in order: an engine-neutral sign of progress. */
  storeCalls: StoreCall[];
  logs: LogLine[];
  /** Every raw log line, to search for secrets. */
  rawLogs: string[];
  close(): Promise<void>;
}

/** The real app, in-process on port 0, against a real Redis (the suite's, unless `redisUrl` is given). */
export async function startTestApp(
  options: {
    env?: Record<string, string>;
    redisUrl?: string;
    now?: () => Date;
    /** Wraps the project's engine (a test that injects storage faults). */
    wrapStore?: (store: BlobStore) => BlobStore;
  } = {},
): Promise<TestApp> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-test-'));
  const prefix = uniquePrefix();
  const config = { ...loadConfig(testEnv(dir, prefix, options.redisUrl ?? inject('redisUrl'), options.env)), secret: TEST_SECRET };
  await ensureDirectories(config);
  const rawLogs: string[] = [];
  const logs: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        rawLogs.push(line);
        logs.push(JSON.parse(line) as LogLine);
      }
      done();
    },
  });
  const log = createLogger({ service: 'api', level: 'debug', dir: '', stream, silentStdout: true });
  const redis = createApiRedis(config.redisUrl!);
  redis.on('error', () => undefined);
  await waitForRedis(redis, 10_000);
  const storeCalls: StoreCall[] = [];
  const engine = await storeFromConfig(config, log);
  const store = recordingStore(options.wrapStore ? options.wrapStore(engine) : engine, storeCalls);
  const storage = await storageView(config);
  // The pool is not started here: a test that wants pre-derived keys starts it (deps.pool.start()).
  const { deps, janitor } = await assembleAppDeps({ config, log, redis, store, version: 'test', now: options.now ?? (() => new Date()) });
  const { pool } = deps;
  const app = createApp(deps);
  const server = app.listen(0, '127.0.0.1');
  configureServerTimeouts(server, config);
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    config,
    deps,
    dir,
    storage,
    storeCalls,
    logs,
    rawLogs,
    close: async () => {
      pool?.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await janitor.close().catch(() => undefined);
      redis.disconnect();
      // The suite's own s3rver goes with its directory at the end of the run; an external bucket is emptied now.
      await clearIfExternal(storage);
      await store.close();
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface StoreCall {
  op: 'create' | 'commit' | 'abort' | 'read' | 'destroy';
  blobId: string;
}

/**
 * The app's engine, recording each call: a test can wait for "the upload has started its blob"
 * on either engine (an fs partial is a file at once; an s3 upload under 256 KiB is only in memory).
 */
function recordingStore(store: BlobStore, calls: StoreCall[]): BlobStore {
  return {
    ...store,
    create(blobId) {
      calls.push({ op: 'create', blobId });
      const writer = store.create(blobId);
      return {
        stream: writer.stream,
        commit: () => {
          calls.push({ op: 'commit', blobId });
          return writer.commit();
        },
        abort: () => {
          calls.push({ op: 'abort', blobId });
          return writer.abort();
        },
      };
    },
    read(blobId, range) {
      calls.push({ op: 'read', blobId });
      return store.read(blobId, range);
    },
    destroy(blobId, reason) {
      calls.push({ op: 'destroy', blobId });
      return store.destroy(blobId, reason);
    },
  };
}

/**
 * For a describe block whose tests stop, restart or fill Redis: a private redis-server and an app on
 * it, started before the block's tests and torn down after. Read `world.app` / `world.redis` in tests.
 */
export function appOnPrivateRedis(
  redisArgs: string[] = [],
  options: { env?: Record<string, string> } = {},
): { readonly app: TestApp; readonly redis: TestRedis } {
  const world = {} as { app: TestApp; redis: TestRedis };
  beforeAll(async () => {
    world.redis = await startTestRedis(redisArgs);
    world.app = await startTestApp({ ...options, redisUrl: world.redis.url });
  });
  afterAll(async () => {
    await world.app.close();
    await world.redis.destroy();
  });
  return world;
}

/**
 * The real app, and with `worker` a real janitor worker on the same Redis and storage (debug logs, so
 * a test can wait for its events), for the enclosing describe block; `env` applies to both, and
 * `wrapStore` (startTestApp's) to the app's storage engine.
 */
export function useAppStack(
  options: { env?: Record<string, string>; worker?: boolean; wrapStore?: (store: BlobStore) => BlobStore } = {},
): {
  readonly app: TestApp;
  readonly worker: RunningProcess;
  readonly env: Record<string, string>;
} {
  const stack = {} as { app: TestApp; worker: RunningProcess; env: Record<string, string> };
  beforeAll(async () => {
    stack.app = await startTestApp({
      ...(options.env ? { env: options.env } : {}),
      ...(options.wrapStore ? { wrapStore: options.wrapStore } : {}),
    });
    stack.env = testEnv(stack.app.dir, stack.app.config.redisPrefix, inject('redisUrl'), { ...options.env, LOG_LEVEL: 'debug' });
    if (!options.worker) return;
    stack.worker = runTs('workers/main.ts', stack.env);
    await stack.worker.waitForEvent('worker_started');
  });
  afterAll(async () => {
    if (options.worker) {
      stack.worker.child.kill('SIGTERM');
      await stack.worker.exited;
    }
    await stack.app.close();
  });
  return stack;
}
