import { constants } from 'node:fs';
import { open, readdir, readFile, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { inject } from 'vitest';
import type { BlobStore, StoredEntry } from '../../app/blobs/blob-store.js';
import { createFsStore, PARTIAL_SUFFIX } from '../../app/blobs/fs-store.js';
import { loadConfig, type Config } from '../../app/config.js';
import { createSilentLogger } from '../../app/shared/logger.js';

/**
 * The storage engine as a suite parameter. vitest.config.ts runs the API and janitor suites once per
 * engine (projects `fs` and `s3`); a test learns its project's engine here, puts apps and worker
 * processes on it with `engineEnv`, and looks at what they stored through a `StorageView`, never
 * through STORAGE_PATH or a bucket directly. Tests that only make sense on one engine live in files
 * of their own (`*.fs.test.ts`) that only that engine's project runs.
 */

export type EngineName = 'fs' | 's3';

/** The s3 project's store, as tests/helpers/s3-setup.ts provides it (plain data: it crosses processes). */
export interface S3Target {
  kind: 's3rver' | 'external';
  endpoint: string | null;
  region: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string } | null;
  forcePathStyle: boolean;
  /** s3rver's data directory (objects, metadata, multipart parts), or null for an external store. */
  directory: string | null;
}

/** This project's engine. */
export function testEngine(): EngineName {
  return inject('engine');
}

/** The s3 project's store; throws in the fs project. */
export function s3Target(): S3Target {
  const target = inject('s3Target');
  if (!target) throw new Error('no S3 target: this test runs in the s3 project only (vitest.config.ts)');
  return target;
}

/** The key prefix of a test's blobs: derived from its Redis prefix, so an app and its worker meet under it. */
export function s3PrefixFor(redisPrefix: string): string {
  return `${redisPrefix}/`;
}

/**
 * Variables that put an app or a worker process on this project's engine: for `fs` its directories
 * under `dir`; for `s3` the project's bucket under a prefix of its own (from `redisPrefix`), so tests
 * sharing one server never see each other's objects. STORAGE_PATH and TEMP_PATH are set on both.
 */
export function engineEnv(dir: string, redisPrefix: string, engine: EngineName = testEngine()): Record<string, string> {
  const dirs = { STORAGE_PATH: path.join(dir, 'uploads'), TEMP_PATH: path.join(dir, 'temp') };
  if (engine === 'fs') return { STORAGE_BACKEND: 'fs', ...dirs };
  const target = s3Target();
  return {
    STORAGE_BACKEND: 's3',
    ...dirs,
    S3_BUCKET: target.bucket,
    S3_REGION: target.region,
    S3_PREFIX: s3PrefixFor(redisPrefix),
    S3_FORCE_PATH_STYLE: String(target.forcePathStyle),
    ...(target.endpoint !== null ? { S3_ENDPOINT: target.endpoint } : {}),
    ...(target.credentials !== null
      ? { S3_ACCESS_KEY_ID: target.credentials.accessKeyId, S3_SECRET_ACCESS_KEY: target.credentials.secretAccessKey }
      : {}),
  };
}

/** Something the store holds as raw bytes, as its medium keeps it (a file, an object, a multipart part). */
export interface RawItem {
  name: string;
  data: Buffer;
}

/**
 * What one app (or worker) stored, seen from outside: through a second instance of its engine
 * (`store`, so `list()` and `read()` are the engine's own) and, for what an engine must not be trusted
 * to report about itself, through the medium (files, objects, multipart parts).
 */
export interface StorageView {
  readonly engine: EngineName;
  /** A store on the same place as the app's (its own client). */
  readonly store: BlobStore;
  /** Everything `list()` shows: blobs and the unfinished uploads the store can list. */
  entries(): Promise<StoredEntry[]>;
  /** Every entry's engine reference (path or key), sorted: a fingerprint to compare before and after. */
  names(): Promise<string[]>;
  /** Ids of the committed blobs. */
  blobIds(): Promise<string[]>;
  /** Whether a committed blob `blobId` exists. */
  has(blobId: string): Promise<boolean>;
  /** A committed blob's raw ciphertext. */
  read(blobId: string): Promise<Buffer>;
  /** Flips one bit of a committed blob's ciphertext at `offset` (negative: from the end). */
  corrupt(blobId: string, offset: number): Promise<void>;
  /** Cuts a committed blob's ciphertext to its first `length` bytes. */
  truncate(blobId: string, length: number): Promise<void>;
  /** Writes a committed object named `name` (a blob id, or a stranger), optionally backdated. */
  put(name: string, bytes: Buffer | string, options?: { ageMs?: number }): Promise<void>;
  /** Leaves an unfinished upload of `blobId` (fs: a partial file; s3: a multipart upload with one part). */
  putPartial(blobId: string, bytes: Buffer, options?: { ageMs?: number }): Promise<void>;
  /** Whether `list()` shows unfinished uploads here (fs yes; s3 where the store lists multipart uploads, s3rver does not). */
  partialsListed(): Promise<boolean>;
  /** Unfinished uploads as the medium shows them, whether or not `list()` can (s3rver: its parts on disk). */
  partials(): Promise<{ blobId: string | null; name: string; size: number }[]>;
  /** Whether the medium holds an unfinished upload of `blobId`. */
  hasPartial(blobId: string): Promise<boolean>;
  /** Every stored byte that can be read from outside, unfinished uploads included where the medium allows. */
  raw(): Promise<RawItem[]>;
  /** Whether a `raw()` name is an unfinished upload's. */
  isUnfinished(name: string): boolean;
  /** Deletes everything under this view (a test's own cleanup between cases). */
  clear(): Promise<void>;
  close(): Promise<void>;
}

type StorageConfig = Pick<Config, 'storageBackend' | 'storagePath' | 'tempPath' | 's3Prefix' | 'shredPasses'>;

/** A view of the storage that `config` (an app's, or one loaded from a worker's env) points at. */
export async function storageView(config: StorageConfig): Promise<StorageView> {
  if (config.storageBackend === 's3') {
    // Loaded only in the s3 project: the AWS SDK costs every fs test file its load time otherwise.
    const { s3StorageView } = await import('./engine-s3.js');
    return s3StorageView(s3Target(), config.s3Prefix);
  }
  return fsStorageView(config.storagePath, config.tempPath);
}

/**
 * Empties a view's prefix when the s3 project runs against an external store; the suite's own s3rver
 * and the fs project's temp directories go as a whole at the end instead.
 */
export async function clearIfExternal(view: StorageView): Promise<void> {
  if (view.engine === 's3' && s3Target().kind === 'external') await view.clear();
}

/** A view of the storage that a process started with `env` (from testEnv) uses. */
export function storageFor(env: Record<string, string>): Promise<StorageView> {
  return storageView(loadConfig(env));
}

/** Collects every entry of `store.list()`. */
export async function listAll(store: BlobStore): Promise<StoredEntry[]> {
  const all: StoredEntry[] = [];
  for await (const entry of store.list()) all.push(entry);
  return all;
}

export async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Sets a file's times `ageMs` into the past. */
export async function backdate(file: string, ageMs: number): Promise<void> {
  const then = new Date(Date.now() - ageMs);
  await utimes(file, then, then);
}

async function filesIn(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).map((name) => path.join(dir, name));
}

function fsStorageView(storagePath: string, tempPath: string): StorageView {
  const store = createFsStore({ storagePath, tempPath, shredPasses: 1, log: createSilentLogger() });
  const entries = () => listAll(store);
  const blobPath = (blobId: string) => path.join(storagePath, blobId);
  return {
    engine: 'fs',
    store,
    entries,
    names: async () => (await entries()).map((e) => e.ref).sort(),
    blobIds: async () => (await entries()).filter((e) => e.kind === 'blob' && e.blobId !== null).map((e) => e.blobId!),
    has: (blobId) =>
      stat(blobPath(blobId)).then(
        (s) => s.isFile(),
        () => false,
      ),
    read: async (blobId) => readAll(await store.read(blobId)),
    async corrupt(blobId, offset) {
      const handle = await open(blobPath(blobId), constants.O_RDWR | constants.O_NOFOLLOW);
      try {
        const at = offset < 0 ? (await handle.stat()).size + offset : offset;
        const byte = Buffer.alloc(1);
        await handle.read(byte, 0, 1, at);
        byte[0] = byte[0]! ^ 0x01;
        await handle.write(byte, 0, 1, at);
      } finally {
        await handle.close();
      }
    },
    truncate: (blobId, length) => truncate(blobPath(blobId), length),
    async put(name, bytes, options = {}) {
      await writeFile(path.join(storagePath, name), bytes);
      if (options.ageMs !== undefined) await backdate(path.join(storagePath, name), options.ageMs);
    },
    async putPartial(blobId, bytes, options = {}) {
      const file = path.join(tempPath, `${blobId}${PARTIAL_SUFFIX}`);
      await writeFile(file, bytes);
      if (options.ageMs !== undefined) await backdate(file, options.ageMs);
    },
    partialsListed: () => Promise.resolve(true),
    partials: async () =>
      (await entries()).filter((e) => e.kind === 'partial').map((e) => ({ blobId: e.blobId, name: e.ref, size: e.size })),
    hasPartial: (blobId) =>
      stat(path.join(tempPath, `${blobId}${PARTIAL_SUFFIX}`)).then(
        (s) => s.isFile(),
        () => false,
      ),
    async raw() {
      const items: RawItem[] = [];
      for (const file of [...(await filesIn(storagePath)), ...(await filesIn(tempPath))]) {
        const data = await readFile(file).catch(() => null); // gone meanwhile
        if (data) items.push({ name: file, data });
      }
      return items;
    },
    isUnfinished: (name) => name.endsWith(PARTIAL_SUFFIX),
    async clear() {
      for (const entry of await entries()) await store.destroyEntry(entry, 'test cleanup');
    },
    close: () => store.close(),
  };
}
