import type { Config } from '../config.js';
import type { Logger } from '../shared/logger.js';
import type { AbuseRepository, CountedClient, FailureTerms, Reservation } from './abuse.repository.js';

/**
 * An IPv6 /48 may fail this many times the per-client limit before all of it is blocked: one party
 * can hold a whole /48 (65,536 /64s), and without it each /64 would get its own budget.
 */
const AGGREGATE_FAIL_MULTIPLE = 4;

export interface AbuseDeps {
  abuse: AbuseRepository;
  config: Pick<Config, 'downloadFailLimit' | 'downloadBlockSeconds'>;
  log: Logger;
  now: () => Date;
}

function terms(config: AbuseDeps['config']): FailureTerms {
  return {
    limit: config.downloadFailLimit,
    aggregateLimit: config.downloadFailLimit * AGGREGATE_FAIL_MULTIPLE,
    blockMs: config.downloadBlockSeconds * 1000,
  };
}

/** Before a lookup's KDF work: a slot of the client's failure budget, or why there is none. */
export function reserveLookup(deps: AbuseDeps, client: CountedClient): Promise<Reservation> {
  return deps.abuse.reserve(client, terms(deps.config));
}

/**
 * After the lookup: a key that matched no file counts as a failure (a 410 for a tombstoned key
 * does not); the failure that reaches DOWNLOAD_FAIL_LIMIT blocks the client on every key route for
 * DOWNLOAD_BLOCK_WINDOW. `logFields` says how the client may appear in the log (LOG_IP).
 */
export async function settleLookup(
  deps: AbuseDeps,
  client: CountedClient & { logFields: Record<string, unknown> },
  outcome: 'hit' | 'miss',
): Promise<void> {
  const started = await deps.abuse.settle(client, outcome, { ...terms(deps.config), now: deps.now().getTime() });
  const blockSeconds = deps.config.downloadBlockSeconds;
  if (started.client) deps.log.warn('ip_blocked', { ...client.logFields, scope: 'client', block_seconds: blockSeconds });
  if (started.aggregate) deps.log.warn('ip_blocked', { ...client.logFields, scope: 'aggregate', block_seconds: blockSeconds });
}
