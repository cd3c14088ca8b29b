/**
 * The KDF shared by every route (SPEC §4.3, §10.4): scrypt (app/crypto/keys.ts) behind the fair
 * scheduler, so a flood from many addresses slows lookups a little and starves no one. One per
 * process, built in main.ts from config, so every route and the key pool share the same slots.
 */
import {
  DEFAULT_KDF_CONCURRENCY,
  DEFAULT_KDF_MAX_QUEUE,
  DEFAULT_SCRYPT_COST_LOG2,
  deriveKeys,
  MAX_SCRYPT_COST_LOG2,
  MIN_SCRYPT_COST_LOG2,
  type DerivedKeys,
} from '../crypto/keys.js';
import { releaseScryptMemory } from '../crypto/scrypt.js';
import { createFairScheduler, type FairSchedulerStats, type Requester } from './fair-scheduler.js';

export type DeriveKeys = (options: { passphrase: string; secret: Buffer | string; costLog2: number }) => Promise<DerivedKeys>;

interface KdfOptions {
  secret: Buffer | string;
  /** log2 N of scrypt (KDF_COST). */
  costLog2?: number;
  /** scrypt computations at once (KDF_CONCURRENCY). */
  concurrency?: number;
  /** Lookups that may wait, all clients together (KDF_MAX_QUEUE). */
  maxQueue?: number;
  /** Queued + running per client; default 2 × concurrency (see fair-scheduler.ts). */
  maxPerClient?: number;
  /** Queued per /24 or /48; default maxQueue / 4 (see fair-scheduler.ts). */
  maxQueuedPerAggregate?: number;
  /** Tests inject a fake; the default is scrypt on the libuv pool. */
  deriveKeys?: DeriveKeys;
  /** Called whenever the KDF idles; the default unmaps the memory scrypt keeps while busy (app/crypto/scrypt.ts). */
  releaseMemory?: () => void;
}

export interface KdfStats extends FairSchedulerStats {
  costLog2: number;
}

export interface Kdf {
  /** A lookup's or an upload's derivation in `who`'s fair turn; rejects at once with kdfBusy() when `who` is over a cap. */
  derive(passphrase: string, who: Requester): Promise<DerivedKeys>;
  /** Only when the KDF would otherwise idle (the key pool); an abort withdraws it while it waits. */
  deriveInBackground(passphrase: string, options?: { signal?: AbortSignal }): Promise<DerivedKeys>;
  /** Counters for metrics; they never name a client. */
  stats(): KdfStats;
}

export function createKdf(options: KdfOptions): Kdf {
  const { secret } = options;
  if (secret.length === 0) throw new RangeError('secret must not be empty');
  const costLog2 = options.costLog2 ?? DEFAULT_SCRYPT_COST_LOG2;
  // Checked here so a bad KDF_COST stops the start, not every lookup afterwards.
  if (!Number.isInteger(costLog2) || costLog2 < MIN_SCRYPT_COST_LOG2 || costLog2 > MAX_SCRYPT_COST_LOG2) {
    throw new RangeError(`costLog2 must be an integer in ${MIN_SCRYPT_COST_LOG2}..${MAX_SCRYPT_COST_LOG2}`);
  }
  const derive = options.deriveKeys ?? deriveKeys;
  const scheduler = createFairScheduler({
    concurrency: options.concurrency ?? DEFAULT_KDF_CONCURRENCY,
    maxQueue: options.maxQueue ?? DEFAULT_KDF_MAX_QUEUE,
    maxPerClient: options.maxPerClient,
    maxQueuedPerAggregate: options.maxQueuedPerAggregate,
  });
  // scrypt keeps its memory from one derivation to the next while the KDF is busy; it is given back
  // when none runs after the current callbacks (the scheduler starts a queued derivation as soon as
  // one ends, so a queue never sees it go), at once for a lone lookup.
  const releaseMemory = options.releaseMemory ?? releaseScryptMemory;
  let running = 0;
  let pendingRelease: NodeJS.Immediate | undefined;
  const releaseWhenIdle = () => {
    pendingRelease = undefined;
    if (running === 0) releaseMemory();
  };
  // An empty passphrase is a caller's bug: refuse it before it takes a place in the queue.
  const task = (passphrase: string) => {
    if (passphrase.length === 0) throw new RangeError('passphrase must not be empty');
    return async () => {
      running += 1;
      if (pendingRelease) clearImmediate(pendingRelease);
      pendingRelease = undefined;
      try {
        return await derive({ passphrase, secret, costLog2 });
      } finally {
        running -= 1;
        if (running === 0) pendingRelease = setImmediate(releaseWhenIdle);
      }
    };
  };

  return {
    derive: async (passphrase, who) => scheduler.run(who, task(passphrase)),
    deriveInBackground: async (passphrase, { signal } = {}) => scheduler.runInBackground(task(passphrase), { signal }),
    stats: () => ({ ...scheduler.stats(), costLog2 }),
  };
}
