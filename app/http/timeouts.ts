import type { Server } from 'node:http';
import type { Config } from '../config.js';

/** Slowest upload speed we still serve in full: 64 KiB/s (a poor mobile link). */
const MIN_UPLOAD_BYTES_PER_SECOND = 64 * 1024;
/** All request headers must have arrived within this time (slowloris). */
const HEADERS_TIMEOUT_MS = 20_000;

interface ServerTimeoutOverrides {
  /** Tests only: a shorter header deadline. */
  headersTimeoutMs?: number;
}

/**
 * The longest a request may take: the largest allowed upload at 64 KiB/s, plus a minute. An upload's
 * lease lasts as long (uploads.usecases.ts): an s3 multipart upload keeps its start time however long
 * it runs, and the sweep must not take one that is still being written.
 */
export function maxRequestMs(config: Pick<Config, 'maxFileSize'>): number {
  return Math.ceil(config.maxFileSize / MIN_UPLOAD_BYTES_PER_SECOND) * 1000 + 60_000;
}

/**
 * Header and request timeouts (SPEC §4.7). Headers must arrive within 20 s (slowloris); a whole
 * request may take as long as the largest allowed upload at 64 KiB/s, plus a minute. A body that
 * stalls is cut off sooner by the upload pipeline's own idle timer (UPLOAD_STALL_SECONDS), which
 * discards what was written. Node enforces headersTimeout/requestTimeout on its
 * `connectionsCheckingInterval` sweep (30 s unless the server was created with a shorter one).
 */
export function configureServerTimeouts(
  server: Server,
  config: Pick<Config, 'maxFileSize' | 'uploadStallSeconds'>,
  overrides: ServerTimeoutOverrides = {},
): void {
  const headersTimeout = overrides.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
  server.headersTimeout = headersTimeout;
  server.requestTimeout = Math.max(headersTimeout, maxRequestMs(config));
  server.keepAliveTimeout = 5_000;
  // Idle sockets (no bytes either way) are closed after the stall window.
  server.timeout = (config.uploadStallSeconds + 5) * 1000;
}
