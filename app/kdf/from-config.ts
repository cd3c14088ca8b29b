import type { RuntimeConfig } from '../config.js';
import type { Wordlist } from '../diceware/wordlist.js';
import { createKdf, type Kdf } from './kdf.js';
import { createKeyPool, type KeyPool } from './key-pool.js';

/**
 * The process's one KDF and its key pool, from the configuration. The pool is not started here:
 * the process starts it once it serves (main.ts), so in-process tests spend no scrypt on it.
 */
export function kdfFromConfig(config: RuntimeConfig, wordlist: Wordlist, now: () => Date): { kdf: Kdf; pool: KeyPool | null } {
  const kdf = createKdf({
    secret: config.secret,
    costLog2: config.kdfCostLog2,
    concurrency: config.kdfConcurrency,
    maxQueue: config.kdfMaxQueue,
    maxPerClient: config.kdfMaxPerClient,
  });
  const pool = config.kdfPoolSize > 0 ? createKeyPool({ kdf, wordlist, words: config.dicewareWords, size: config.kdfPoolSize, now }) : null;
  return { kdf, pool };
}
