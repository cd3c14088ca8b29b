/**
 * Pre-derived upload keys (SPEC §10.5): an upload's passphrase does not depend on its file, so the
 * scrypt it needs can be paid while the KDF is idle. Entries live only in this process's memory,
 * are handed out once, and are never logged or persisted; the store script still rejects a
 * passphrase that collides with a live record, like any other draw.
 *
 * Refills go only through `kdf.deriveInBackground`, one at a time: they run when no lookup waits
 * and delay a lookup by at most the one derivation already running. Under sustained load the pool
 * drains and uploads derive on demand in their fair turn, as lookups do.
 *
 * `maxAgeMs` defaults to 5 minutes. An entry is a passphrase an upload has not chosen yet; if this
 * process's memory leaked (a core dump, a heap snapshot), every entry in it is the key of a future
 * upload, so entries must not live long. Renewing the whole pool costs `size` derivations per
 * `maxAgeMs` (32 × ~40 ms ≈ 1.3 s of one core every 5 minutes, under 0.5 % when idle), while a
 * burst of uploads minutes after the last one still finds a full pool.
 */
import { generatePassphrase } from '../diceware/passphrase.js';
import type { DerivedKeys } from '../crypto/keys.js';
import type { Wordlist } from '../diceware/wordlist.js';
import type { Kdf } from './kdf.js';

export const DEFAULT_KEY_POOL_SIZE = 32;
export const DEFAULT_KEY_POOL_MAX_AGE_MS = 5 * 60_000;
/**
 * A burst of uploads takes entries faster than scrypt makes them, and a refill running meanwhile
 * takes a core from the burst (measured: a 32-upload burst on two cores ran at ~120/s with refills
 * alongside, ~250/s without). So refilling waits until no upload has taken an entry for this long.
 */
const DEFAULT_KEY_POOL_QUIET_MS = 500;

export interface PooledKeys {
  passphrase: string;
  /** 64 hex characters, names the Redis record. */
  lookupId: string;
  /** 32 bytes; the caller owns it once taken. */
  kek: Buffer;
}

/** Counters and times for metrics; never an entry. Times are epoch milliseconds. */
export interface KeyPoolStats {
  /** Fresh entries held now. */
  size: number;
  capacity: number;
  hits: number;
  misses: number;
  /** Entries dropped unused (too old, or at stop). */
  dropped: number;
  /** Background derivations that failed (the refill pauses until the next take or expiry). */
  failures: number;
  refilling: boolean;
  /** When the pool last became full. */
  lastFullAt: number | null;
  /** How long the last refill took from an empty pool (or from start) to a full one, KDF-busy time included. */
  lastRefillFromEmptyMs: number | null;
}

export interface KeyPool {
  /** Begins refilling. */
  start(): void;
  /** A fresh entry of `words` words, removed from the pool, or null when none is ready. */
  take(): PooledKeys | null;
  /** Ends refilling for good, withdraws a waiting derivation, cancels the timer, zeroes every entry. */
  stop(): void;
  stats(): KeyPoolStats;
  /** The word count of every entry: only an upload asking for this many may take one. */
  readonly words: number;
}

/** Runs `callback` after `delayMs`; returns a cancel function. */
export type ScheduleTimer = (callback: () => void, delayMs: number) => () => void;

/** unref: a pending expiry never keeps the process alive. */
const defaultScheduleTimer: ScheduleTimer = (callback, delayMs) => {
  const timer = setTimeout(callback, delayMs);
  timer.unref();
  return () => clearTimeout(timer);
};

interface Entry extends PooledKeys {
  createdAt: number;
}

export function createKeyPool(options: {
  kdf: Pick<Kdf, 'deriveInBackground'>;
  wordlist: Wordlist;
  words: number;
  size?: number;
  maxAgeMs?: number;
  /** Refill only after no take for this long (0 = at once). */
  quietMs?: number;
  now: () => Date;
  /** Tests inject one they fire by hand; the default is an unref'd setTimeout. */
  scheduleTimer?: ScheduleTimer;
}): KeyPool {
  const { kdf, wordlist, words, now } = options;
  const capacity = options.size ?? DEFAULT_KEY_POOL_SIZE;
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_KEY_POOL_MAX_AGE_MS;
  const quietMs = options.quietMs ?? DEFAULT_KEY_POOL_QUIET_MS;
  const scheduleTimer = options.scheduleTimer ?? defaultScheduleTimer;
  if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError('size must be an integer ≥ 0');
  if (!Number.isFinite(maxAgeMs) || maxAgeMs <= 0) throw new RangeError('maxAgeMs must be positive');
  if (!Number.isInteger(words) || words < 1) throw new RangeError('words must be an integer ≥ 1');

  /** Oldest first: the one handed out next is the one that would expire next. */
  let entries: Entry[] = [];
  let state: 'new' | 'running' | 'stopped' = 'new';
  let refilling = false;
  let abort: AbortController | null = null;
  let cancelTimer: (() => void) | null = null;
  let emptySince: number | null = null;
  const counts = { hits: 0, misses: 0, dropped: 0, failures: 0 };
  let lastFullAt: number | null = null;
  let lastRefillFromEmptyMs: number | null = null;
  let lastTakeAt = -Infinity;
  let cancelQuiet: (() => void) | null = null;

  const clock = () => now().getTime();

  /** Zeroing is best effort: the passphrase and lookup id are JS strings and cannot be wiped. */
  function discard(entry: Entry): void {
    entry.kek.fill(0);
    counts.dropped += 1;
  }

  function noteEmpty(): void {
    if (entries.length === 0 && emptySince === null) emptySince = clock();
  }

  function dropExpired(): void {
    const t = clock();
    const fresh: Entry[] = [];
    for (const entry of entries) {
      if (t - entry.createdAt >= maxAgeMs) discard(entry);
      else fresh.push(entry);
    }
    entries = fresh;
    noteEmpty();
  }

  /** One timer, for the oldest entry's expiry: an idle pool renews itself instead of going stale. */
  function armTimer(): void {
    cancelTimer?.();
    cancelTimer = null;
    const oldest = entries[0];
    if (state !== 'running' || !oldest) return;
    cancelTimer = scheduleTimer(
      () => {
        cancelTimer = null;
        dropExpired();
        armTimer();
        refill();
      },
      Math.max(0, oldest.createdAt + maxAgeMs - clock()),
    );
  }

  function refill(): void {
    if (state !== 'running' || refilling || entries.length >= capacity) return;
    refilling = true;
    void refillLoop();
  }

  /** Refills once uploads have stopped taking entries for quietMs. */
  function refillWhenQuiet(): void {
    if (quietMs === 0) return refill();
    cancelQuiet?.();
    cancelQuiet = scheduleTimer(() => {
      cancelQuiet = null;
      refill();
    }, quietMs);
  }

  /** One derivation at a time until full; never rejects. */
  async function refillLoop(): Promise<void> {
    const controller = new AbortController();
    abort = controller;
    try {
      while (state === 'running' && entries.length < capacity) {
        // Uploads are taking entries again: make way for them, and resume once they stop.
        if (quietMs > 0 && clock() - lastTakeAt < quietMs) {
          refillWhenQuiet();
          return;
        }
        const passphrase = generatePassphrase(wordlist, words);
        const keys: DerivedKeys = await kdf.deriveInBackground(passphrase, { signal: controller.signal });
        if (state !== 'running') {
          keys.kek.fill(0);
          return;
        }
        entries.push({ passphrase, lookupId: keys.lookupId, kek: keys.kek, createdAt: clock() });
        if (entries.length === 1) armTimer();
        if (entries.length === capacity) {
          lastFullAt = clock();
          if (emptySince !== null) lastRefillFromEmptyMs = lastFullAt - emptySince;
          emptySince = null;
        }
      }
    } catch {
      // Stopped (the abort), or the KDF refused or failed: pause; the next take or expiry retries,
      // so a persistent failure costs one attempt per upload, not a busy loop.
      if (state === 'running') counts.failures += 1;
    } finally {
      // Synchronously at the loop's end, so a take() right after it starts the next refill.
      refilling = false;
      abort = null;
    }
  }

  return {
    words,

    start() {
      if (state === 'stopped') throw new Error('key pool was stopped');
      if (state === 'running') return;
      state = 'running';
      noteEmpty();
      refill();
    },

    take() {
      dropExpired();
      lastTakeAt = clock();
      const entry = entries.shift();
      if (entry) counts.hits += 1;
      else counts.misses += 1;
      noteEmpty();
      armTimer();
      refillWhenQuiet();
      if (!entry) return null;
      return { passphrase: entry.passphrase, lookupId: entry.lookupId, kek: entry.kek };
    },

    stop() {
      state = 'stopped';
      abort?.abort();
      cancelTimer?.();
      cancelTimer = null;
      cancelQuiet?.();
      cancelQuiet = null;
      for (const entry of entries) discard(entry);
      entries = [];
    },

    stats() {
      const t = clock();
      return {
        size: entries.filter((entry) => t - entry.createdAt < maxAgeMs).length,
        capacity,
        ...counts,
        refilling,
        lastFullAt,
        lastRefillFromEmptyMs,
      };
    },
  };
}
