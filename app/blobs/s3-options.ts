import type { Config } from '../config.js';
import { ciphertextSize } from '../crypto/stream.js';
import type { Logger } from '../shared/logger.js';
import { maxArchiveBytes } from '../uploads/drop.models.js';

/**
 * The s3 engine's options and its pure decisions, apart from s3-store.ts so that reading the
 * configuration never loads the AWS SDK (an fs deployment does not pay for it).
 */

/** S3's rules: every part but the last at least 5 MiB, at most 10,000 parts. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PARTS = 10_000;
/**
 * Measured with scripts/bench/s3-memory.ts (docs/OPERATIONS.md): with queue size 0 an upload holds one
 * part buffer and pauses while each part is sent (+6 MiB peak RSS per upload); every part allowed in
 * flight while the next one fills costs another part size (+12 MiB at 1) and made no upload faster
 * against a store on the same host. Raise it for a distant store when memory allows.
 */
export const DEFAULT_PART_SIZE = MIN_PART_SIZE;
export const DEFAULT_QUEUE_SIZE = 0;
/** usedBytes() lists the prefix at most this often per process; its own commits and deletes count at once. */
export const USED_BYTES_MAX_AGE_MS = 30_000;

export interface S3StoreOptions {
  /** S3 API URL; undefined = AWS S3 in `region`. */
  endpoint?: string;
  region: string;
  bucket: string;
  /** Key prefix; Cinderbox owns everything under it. */
  prefix: string;
  /** undefined = the AWS SDK's default chain (AWS_* variables, shared config, instance or task role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  forcePathStyle: boolean;
  log: Logger;
  partSize?: number;
  /** Parts of one upload sent while the next one fills; 0 = one part buffer, the upload waits while each part is sent. */
  queueSize?: number;
  /** Largest object to expect: raises the part size so it fits in 10,000 parts. */
  maxObjectBytes?: number;
  usedBytesMaxAgeMs?: number;
  /** check() gives up after this long (it backs /health, which must answer within about a second). */
  checkTimeoutMs?: number;
  /** Per request: the response headers must arrive within this (a part upload includes sending the part). */
  requestTimeoutMs?: number;
  /** Sockets to the store per process; every running download holds one. */
  maxSockets?: number;
  now?: () => number;
}

export type VersioningState = 'Enabled' | 'Suspended' | 'Off' | 'Unknown';

/** The store's options from the parsed configuration (everything but the log). */
export function s3OptionsFromConfig(config: Config): Omit<S3StoreOptions, 'log'> {
  if (config.s3Bucket === undefined) throw new Error('S3_BUCKET is required when STORAGE_BACKEND=s3');
  return {
    endpoint: config.s3Endpoint,
    region: config.s3Region,
    bucket: config.s3Bucket,
    prefix: config.s3Prefix,
    credentials:
      config.s3AccessKeyId !== undefined && config.s3SecretAccessKey !== undefined
        ? { accessKeyId: config.s3AccessKeyId, secretAccessKey: config.s3SecretAccessKey }
        : undefined,
    // S3-compatible servers (MinIO, Ceph, Garage, a plain IP) rarely have a wildcard DNS name per bucket.
    forcePathStyle: config.s3ForcePathStyle ?? config.s3Endpoint !== undefined,
    // The largest object an upload writes is a drop's archive: its zip records come on top of
    // MAX_FILE_SIZE, and the 10,000th part must still hold them.
    maxObjectBytes: ciphertextSize(maxArchiveBytes(config)),
  };
}

/** The operator-facing warning for a bucket's versioning status, or null when versioning is off. */
export function versioningWarning(status: string | undefined): string | null {
  if (status === 'Enabled') {
    return 'bucket versioning is Enabled: a deleted blob stays in the bucket as a noncurrent version. Use a bucket that never had versioning (S3 can only suspend it), or expire noncurrent versions after a day with a lifecycle rule.';
  }
  if (status === 'Suspended') {
    return 'bucket versioning is Suspended: versions written while it was on are kept after their blob is deleted. Delete them, or expire noncurrent versions after a day with a lifecycle rule.';
  }
  return null;
}

/** Part size for the options: the configured one, raised when `maxObjectBytes` would need more than 10,000 parts. */
export function choosePartSize(partSize: number, maxObjectBytes: number | undefined): number {
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE) throw new RangeError(`partSize must be at least ${MIN_PART_SIZE} bytes`);
  if (maxObjectBytes === undefined) return partSize;
  const mib = 1024 * 1024;
  return Math.max(partSize, Math.ceil(maxObjectBytes / MAX_PARTS / mib) * mib);
}
