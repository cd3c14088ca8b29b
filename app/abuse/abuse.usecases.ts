import type { Config } from '../config.js';
import type { Enqueue } from '../jobs/enqueue.js';
import type { Logger } from '../shared/logger.js';
import type { AbuseRepository } from './abuse.repository.js';

export interface AbuseDeps {
  abuse: AbuseRepository;
  config: Pick<Config, 'downloadFailLimit' | 'downloadBlockSeconds'>;
  enqueue: Enqueue;
  log: Logger;
  now: () => Date;
}

/**
 * A lookup of a key that matches no file (a 410 for a tombstoned key does not count): after
 * DOWNLOAD_FAIL_LIMIT of them within the window the client is blocked on every key route.
 * `logFields` says how the client may appear in the log (LOG_IP).
 */
export async function recordFailedLookup(deps: AbuseDeps, client: { id: string; logFields: Record<string, unknown> }): Promise<void> {
  const blockMs = deps.config.downloadBlockSeconds * 1000;
  const until = deps.now().getTime() + blockMs;
  const started = await deps.abuse.recordFailure(client.id, { limit: deps.config.downloadFailLimit, blockMs, until });
  if (!started) return;
  deps.log.warn('ip_blocked', { ...client.logFields, block_seconds: deps.config.downloadBlockSeconds });
  await deps.enqueue('unblock', { client: client.id, until }, { delayMs: blockMs });
}
