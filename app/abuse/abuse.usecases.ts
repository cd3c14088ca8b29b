import type { Config } from '../config.js';
import type { Logger } from '../shared/logger.js';
import type { AbuseRepository, CountedClient, FailureTerms, LookupSlot, Reservation } from './abuse.repository.js';
import { AGGREGATE_MULTIPLE } from './client.models.js';

export interface AbuseDeps {
  abuse: AbuseRepository;
  config: Pick<Config, 'downloadFailLimit' | 'downloadBlockSeconds'>;
  log: Logger;
  now: () => Date;
}

function terms(config: AbuseDeps['config']): FailureTerms {
  return {
    limit: config.downloadFailLimit,
    aggregateLimit: config.downloadFailLimit * AGGREGATE_MULTIPLE,
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
 * DOWNLOAD_BLOCK_WINDOW. The log names what was blocked as LOG_IP allows: the client, or its
 * IPv6 /48, by the hash `admin unblock` takes.
 */
export async function settleLookup(
  deps: AbuseDeps,
  client: CountedClient & { logFields: Record<string, unknown>; aggregateLogFields: Record<string, unknown> },
  slot: LookupSlot,
  outcome: 'hit' | 'miss',
): Promise<void> {
  const started = await deps.abuse.settle(client, slot, outcome, { ...terms(deps.config), now: deps.now().getTime() });
  const blockSeconds = deps.config.downloadBlockSeconds;
  if (started.client) deps.log.warn('ip_blocked', { ...client.logFields, scope: 'client', block_seconds: blockSeconds });
  if (started.aggregate) deps.log.warn('ip_blocked', { ...client.aggregateLogFields, scope: 'aggregate', block_seconds: blockSeconds });
}
