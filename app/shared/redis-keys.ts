/**
 * Every Redis key Cinderbox uses, and its lifetime, in one place (STYLE §11). Keys that belong to
 * one file share the hash tag `{<lookupId>}` so a file's record and tombstone live on one Cluster
 * slot and a Lua script may touch both. Lookup ids never leave Redis: not in logs, not in job data.
 */
export interface RedisKeys {
  prefix: string;
  /** The file's record (a hash): blob id, wrapped key, encrypted metadata, uses, expiry… */
  file(lookupId: string): string;
  /** A burned, expired or deleted file's tombstone: its reason, kept TOMBSTONE_HOURS. */
  tombstone(lookupId: string): string;
  /** The sender's delivery receipt (times and counts, the delete token's hash), kept as long as the tombstone. */
  receipt(lookupId: string): string;
  /**
   * What protects a blob's bytes from the janitor (blobs.repository.ts): a sorted set holding `live`
   * (scored with the record's expiry) and one lease per running transfer (scored with its end). Keyed
   * by blob id, so the janitor decides in O(1) without knowing the lookup id.
   */
  blob(blobId: string): string;
  /** Held by the one janitor job destroying a blob's bytes right now (two jobs of one blob may meet). */
  blobLock(blobId: string): string;
  /** Worker heartbeat, refreshed every few seconds. */
  heartbeat(): string;
  /** What /health writes (5 s TTL) to learn that Redis takes writes, not only that it answers. */
  healthProbe(): string;
  /** Failed lookups of one client (IP or /64) within the counting window. */
  lookupFailures(client: string): string;
  /** An active block of one client; its TTL is the block. */
  block(client: string): string;
  /** Admin view: sorted set of blocked clients (as logged) scored by block end, ms. */
  blockList(): string;
  /** express-rate-limit store prefix for one limiter. */
  rateLimit(name: string): string;
  /** BullMQ queue prefix (BullMQ adds `:<queue>:…`). */
  queuePrefix(): string;
  /** Held by the one janitor replica that is sweeping. */
  sweepLock(): string;
  /**
   * A resume record (docs/FORMAT.md): what finishing one started download needs, the data key wrapped
   * under a key only its resume capability derives; kept RESUME_WINDOW_SECONDS.
   */
  resume(resumeId: string): string;
  /** A download ticket of the recipient page: the passphrase's KEK wrapped for one GET, kept a minute. */
  ticket(ticketId: string): string;
  /**
   * How many times an `admin purge` started or ended (a counter, no TTL): a claim notes it, and its
   * refund or resume record is refused once it changed, so no download claimed before or during a
   * purge brings a file or a wrapped key back after it.
   */
  purgeEpoch(): string;
  /** Present while an `admin purge` runs (an hour at most, should it die half-way). */
  purgeRunning(): string;
}

export const HEARTBEAT_TTL_SECONDS = 15;
export const LOOKUP_FAILURE_WINDOW_SECONDS = 600;

export function redisKeys(prefix: string): RedisKeys {
  return {
    prefix,
    file: (lookupId) => `${prefix}:file:{${lookupId}}`,
    tombstone: (lookupId) => `${prefix}:tomb:{${lookupId}}`,
    receipt: (lookupId) => `${prefix}:receipt:{${lookupId}}`,
    blob: (blobId) => `${prefix}:blob:${blobId}`,
    blobLock: (blobId) => `${prefix}:blob-lock:${blobId}`,
    heartbeat: () => `${prefix}:worker:heartbeat`,
    healthProbe: () => `${prefix}:health:probe`,
    lookupFailures: (client) => `${prefix}:fail:${client}`,
    block: (client) => `${prefix}:block:${client}`,
    blockList: () => `${prefix}:blocklist`,
    rateLimit: (name) => `${prefix}:rl:${name}:`,
    queuePrefix: () => `${prefix}:bull`,
    sweepLock: () => `${prefix}:janitor:sweep-lock`,
    resume: (resumeId) => `${prefix}:resume:{${resumeId}}`,
    ticket: (ticketId) => `${prefix}:ticket:{${ticketId}}`,
    purgeEpoch: () => `${prefix}:purge:epoch`,
    purgeRunning: () => `${prefix}:purge:running`,
  };
}
